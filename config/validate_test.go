package config

import (
	"net/netip"
	"strings"
	"testing"
)

const (
	argon2OK = "$argon2id$v=19$m=65536,t=3,p=4$2UAGrridhke77taNMhWNhA$IY5HOgqYz4N0uzcztzt1B7u8ScRldrjBtPWsfFTnR8U"
	bcryptOK = "$2b$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"
)

// Each case has one error, on the line marked "#!" (no marker: no line).
func TestValidateErrors(t *testing.T) {
	tests := []struct {
		name, text, key, msg string
	}{
		{"no listener", tlsOK + upstreamOK, "listen", "at least one [[listen]] is required"},
		{"listener address", minimal + "[[listen]]\naddress = \"localhost\" #!\ntls = \"implicit\"\n",
			"listen[1].address", `"localhost" is not host:port`},
		{"listener port", minimal + "[[listen]]\naddress = \":imap\" #!\ntls = \"implicit\"\n",
			"listen[1].address", "the port must be a number"},
		{"listener address twice", minimal + "[[listen]]\naddress = \"127.0.0.1:993\" #!\ntls = \"implicit\"\n",
			"listen[1].address", `"127.0.0.1:993" is also listen[0].address`},
		{"listener tls missing", minimal + "[[listen]] #!\naddress = \":143\"\n",
			"listen[1].tls", "required: one of implicit, starttls, none"},
		{"listener plaintext", minimal + "[[listen]]\naddress = \":143\"\ntls = \"none\" #!\n",
			"listen[1].tls", `"none" needs allow_cleartext_auth = true`},
		{"trusted proxy", minimal + "[[listen]]\naddress = \":143\"\ntls = \"starttls\"\nproxy_protocol = true\n" +
			"trusted_proxies = [\n  \"10.0.0.0/8\",\n  \"bogus\", #!\n]\n",
			"listen[1].trusted_proxies[1]", `"bogus" is not an IP address or CIDR prefix`},
		{"trusted proxy one line", minimal + "[[listen]]\naddress = \":143\"\ntls = \"starttls\"\ntrusted_proxies = [\"::1\", \"1.2.3.4/33\"] #!\n",
			"listen[1].trusted_proxies[1]", `"1.2.3.4/33" is not`},
		{"proxy protocol without trusted proxies", minimal + "[[listen]]\naddress = \":143\"\ntls = \"starttls\"\nproxy_protocol = true #!\n",
			"listen[1].proxy_protocol", "needs trusted_proxies"},
		{"tls listener without cert", upstreamOK + "[[listen]]\naddress = \":143\"\ntls = \"starttls\" #!\n",
			"listen[0].tls", `"starttls" needs [tls] cert_file and key_file`},
		{"key without cert", "[tls]\nkey_file = \"k.pem\" #!\n[[listen]]\naddress = \":143\"\ntls = \"none\"\nallow_cleartext_auth = true\n" + upstreamOK,
			"tls.key_file", "cert_file must be set too"},
		{"cert without key", "[tls]\ncert_file = \"c.pem\" #!\n[[listen]]\naddress = \":143\"\ntls = \"none\"\nallow_cleartext_auth = true\n" + upstreamOK,
			"tls.cert_file", "key_file must be set too"},
		{"min version", "[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nmin_version = \"1.1\" #!\n" + listenOK + upstreamOK,
			"tls.min_version", `"1.1" is not one of 1.2, 1.3`},
		{"log level", "[log]\nlevel = \"verbose\" #!\n" + minimal, "log.level", `"verbose" is not one of debug, info, warn, error`},
		{"log format", "log.format = \"xml\" #!\n" + minimal, "log.format", `"xml" is not one of text, json`},
		{"admin address", "[admin]\naddress = \"9143\" #!\n" + minimal, "admin.address", "is not host:port"},
		{"idle timeout", "[limits]\nidle_timeout = \"5m\" #!\n" + minimal, "limits.idle_timeout", "5m0s is below 30m"},
		{"negative limit", "[limits]\nmax_line_length = -1 #!\n" + minimal, "limits.max_line_length", "must not be negative"},
		{"merge connections", "[limits]\nmerge_connections = 65 #!\n" + minimal, "limits.merge_connections", "65 is not between 1 and 64"},
		{"merge connections negative", "[limits]\nmerge_connections = -1 #!\n" + minimal, "limits.merge_connections", "-1 is not between 1 and 64"},
		{"per ip above total", "[limits]\nmax_connections = 10\nmax_connections_per_ip = 20 #!\n" + minimal,
			"limits.max_connections_per_ip", "20 is more than max_connections (10)"},
		{"auth delays", "[limits]\nauth_delay = \"5s\"\nmax_auth_delay = \"2s\" #!\n" + minimal,
			"limits.max_auth_delay", "2s is less than auth_delay (5s)"},
		{"upstream without name", minimal + "[[upstream]] #!\naddress = \"b:993\"\n", "upstream[1].name", "required"},
		{"upstream name twice", minimal + "[[upstream]]\nname = \"a\" #!\naddress = \"b:993\"\n",
			"upstream[1].name", `"a" is also upstream[0].name`},
		{"upstream address", minimal + "[[upstream]]\nname = \"b\"\naddress = \"b:99999\" #!\n",
			"upstream[1].address", "the port must be a number from 0 to 65535"},
		{"upstream without address", minimal + "[[upstream]] #!\nname = \"b\"\n", "upstream[1].address", "required: host:port"},
		{"ca_file without tls", minimal + "[[upstream]]\nname = \"b\"\naddress = \"b:143\"\ntls = \"none\"\nca_file = \"ca.pem\" #!\n",
			"upstream[1].ca_file", `is set but tls is "none"`},
		{"user name twice", minimal + "[[user]]\nname = \"u\"\nupstream = \"a\"\n[[user]]\nname = \"u\" #!\nupstream = \"a\"\n",
			"user[1].name", `"u" is also user[0].name`},
		{"user without name", minimal + "[[user]] #!\nupstream = \"a\"\n", "user[0].name", "required"},
		{"user upstream unknown", minimal + "[[user]]\nname = \"u\"\nupstream = \"b\" #!\n",
			"user[0].upstream", `"b" is not the name of an [[upstream]]`},
		{"user without upstream or routes", minimal + "[[user]] #!\nname = \"u\"\n",
			"user[0].upstream", "required: there are no [[route]] rules"},
		{"user verified upstream with stored secret", minimal + "[[user]]\nname = \"u\"\nupstream = \"a\"\nupstream_password = \"env:X\" #!\n",
			"user[0].upstream_password", "must be passthrough when password_hash is empty"},
		{"argon2id params", minimal + "[[user]]\nname = \"u\"\nupstream = \"a\"\npassword_hash = \"$argon2id$v=19$m=abc,t=3,p=4$2UAGrridhke77taNMhWNhA$IY5HOgqYz4N0uzcztzt1B7u8ScRldrjBtPWsfFTnR8U\" #!\n",
			"user[0].password_hash", `argon2id hash: want the parameters m, t and p, in that order; got "m=abc"`},
		{"unknown hash", minimal + "[[user]]\nname = \"u\"\nupstream = \"a\"\npassword_hash = \"{SSHA}abc\" #!\n",
			"user[0].password_hash", "is neither an argon2id hash"},
		{"route without match", minimal + "[[route]] #!\nupstream = \"a\"\n", "route[0].match", "required"},
		{"route bad glob", minimal + "[[route]]\nmatch = \"[a\" #!\nupstream = \"a\"\n", "route[0].match", "is not a valid glob pattern"},
		{"route upstream unknown", minimal + "[[route]]\nmatch = \"*\"\nupstream = \"zz\" #!\n",
			"route[0].upstream", `"zz" is not the name of an [[upstream]]`},
		{"route without upstream", minimal + "[[route]] #!\nmatch = \"*\"\n", "route[0].upstream", "required"},
		{"route template", minimal + "[[route]]\nmatch = \"*\"\nupstream = \"a\"\nusername = \"{usr}@x\" #!\n",
			"route[0].username", "{usr} is not one of {user}, {local}, {domain}"},
		{"route template brace", minimal + "[[route]]\nmatch = \"*\"\nupstream = \"a\"\nusername = \"{user\" #!\n",
			"route[0].username", "has a { with no }"},
		{"route verify", minimal + "[[route]]\nmatch = \"*\"\nupstream = \"a\"\nverify = \"nobody\" #!\n",
			"route[0].verify", `"nobody" is not one of upstream, proxy`},
		{"route stored secret verified upstream", minimal + "[[route]]\nmatch = \"*\"\nupstream = \"a\"\npassword = \"file:/x\" #!\n",
			"route[0].password", `must be passthrough unless verify = "proxy"`},
		{"secrets key value", minimal + "[secrets]\nkey = \"c2VjcmV0\" #!\n",
			"secrets.key", `must be "file:PATH" or "env:NAME"`},
		{"store password without key", minimal + "[[user]]\nname = \"u\"\npassword_hash = \"" + argon2OK + "\"\nupstream = \"a\"\nupstream_password = \"store\" #!\n",
			"user[0].upstream_password", `"store" needs [secrets] key`},
		{"lockout negative", minimal + "[auth]\nlockout_threshold = -1 #!\n",
			"auth.lockout_threshold", "must not be negative"},
		{"oauth without audience", minimal + "[oauth] #!\nissuer = \"https://id.example\"\njwks_url = \"https://id.example/jwks\"\n",
			"oauth.audience", "required when [oauth] is configured"},
		{"oauth plain http", minimal + "[oauth]\nissuer = \"i\"\naudience = \"a\"\njwks_url = \"http://id.example/jwks\" #!\n",
			"oauth.jwks_url", "must use https"},
		{"inline array of tables", "listen = [\n  { address = \":993\", tls = \"implicit\" },\n  { address = \":143\" }, #!\n]\n" + tlsOK + upstreamOK,
			"listen[1].tls", "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantOneError(t, tt.text, tt.key, tt.msg)
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct{ name, text string }{
		{"minimal", minimal},
		{"oauth loopback http", minimal + "[oauth]\nissuer = \"i\"\naudience = \"a\"\njwks_url = \"http://127.0.0.1:8080/jwks\"\n"},
		{"stored password", minimal + "[secrets]\nkey = \"env:IMAPPROXY_KEY\"\n[[user]]\nname = \"u\"\npassword_hash = \"" + argon2OK + "\"\nupstream = \"a\"\nupstream_password = \"oauth2:store\"\n"},
		{"bcrypt", minimal + "[[user]]\nname = \"u\"\nupstream = \"a\"\npassword_hash = \"" + bcryptOK + "\"\nupstream_password = \"env:U\"\n"},
		{"user left to routes", minimal + "[[user]]\nname = \"u\"\npassword_hash = \"" + argon2OK + "\"\n[[route]]\nmatch = \"*\"\nupstream = \"a\"\n"},
		{"verify proxy with stored secret", minimal + "[[route]]\nmatch = \"example.com\"\nupstream = \"a\"\nusername = \"{local}+{domain}*master\"\npassword = \"env:M\"\nverify = \"proxy\"\n"},
		{"plaintext loopback", tlsOK + upstreamOK + "[[listen]]\naddress = \"127.0.0.1:0\"\ntls = \"none\"\nallow_cleartext_auth = true\n"},
		{"no tls needed", upstreamOK + "[[listen]]\naddress = \"[::1]:1143\"\ntls = \"none\"\nallow_cleartext_auth = true\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse([]byte(tt.text), "config.toml"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestValidateAllErrorsInFileOrder(t *testing.T) {
	text := "[log]\nlevel = \"loud\"\n" + // 2
		minimal + // 3-11
		"[[upstream]]\nname = \"a\"\naddress = \"x\"\n" + // 12-14
		"[[user]]\nname = \"u\"\nupstream = \"nope\"\n" // 15-17
	_, err := Parse([]byte(text), "config.toml")
	var got []string
	for _, e := range errorsOf(t, err) {
		got = append(got, e.Error())
	}
	want := []string{
		`config.toml:2: log.level: "loud" is not one of debug, info, warn, error`,
		`config.toml:13: upstream[1].name: "a" is also upstream[0].name`,
		`config.toml:14: upstream[1].address: "x" is not host:port`,
		`config.toml:17: user[0].upstream: "nope" is not the name of an [[upstream]]`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestTrustedNets(t *testing.T) {
	text := minimal + "[[listen]]\naddress = \":143\"\ntls = \"starttls\"\nproxy_protocol = true\n" +
		"trusted_proxies = [\"10.1.2.3/8\", \"192.0.2.7\", \"2001:db8::1\"]\n"
	cfg, err := Parse([]byte(text), "config.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("2001:db8::1/128"),
	}
	got := cfg.Listen[1].TrustedNets
	if len(got) != len(want) {
		t.Fatalf("TrustedNets = %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("TrustedNets[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

// A Config built in code, without defaults, validates without lines.
func TestValidateInCode(t *testing.T) {
	cfg := &Config{
		Listen:    []Listener{{Address: "127.0.0.1:0", TLS: TLSNone, AllowCleartextAuth: true}},
		Upstreams: []Upstream{{Name: "a", Address: "127.0.0.1:143", TLS: TLSNone}},
		Users:     []User{{Name: "u", Upstream: "a"}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.Users[0].UpstreamPassword = Secret{Kind: "literal", Ref: "hunter2"}
	err := cfg.Validate()
	if err == nil || err.Error() != `config: user[0].upstream_password: must be "passthrough", "env:NAME", "file:PATH" or "store", `+
		`optionally after "oauth2:" (the password itself does not belong in the config file)` {
		t.Fatalf("got %v", err)
	}
}

func TestPasswordHashForms(t *testing.T) {
	tests := []struct {
		hash    string
		wantErr string
	}{
		{argon2OK, ""},
		{bcryptOK, ""},
		{"$2a$04$" + bcryptOK[7:], ""},
		{"$2y$16$" + bcryptOK[7:], ""},
		{"$2y$17$" + bcryptOK[7:], "the cost must be 04 to 16"},
		{"$2b$03$" + bcryptOK[7:], "the cost must be 04 to 16"},
		{"$2b$10$" + bcryptOK[7:59], "want 60 characters"},
		{"$2b$10$" + bcryptOK[7:59] + "!", "bcrypt's base64 alphabet"},
		{"$argon2id$m=65536,t=3,p=4$2UAGrridhke77taNMhWNhA$IY5HOgqYz4N0uzcztzt1B7u8ScRldrjBtPWsfFTnR8U", "want 5 fields"},
		{"$argon2id$v=16$m=65536,t=3,p=4$2UAGrridhke77taNMhWNhA$IY5HOgqYz4N0uzcztzt1B7u8ScRldrjBtPWsfFTnR8U", "v=19"},
		{"$argon2id$v=19$m=65536,t=3$2UAGrridhke77taNMhWNhA$IY5HOgqYz4N0uzcztzt1B7u8ScRldrjBtPWsfFTnR8U", "want the parameters m, t and p, in that order"},
		{"$argon2id$v=19$m=65536,t=3,p=4,x=1$2UAGrridhke77taNMhWNhA$IY5HOgqYz4N0uzcztzt1B7u8ScRldrjBtPWsfFTnR8U", "want the parameters m, t and p, in that order"},
		{"$argon2id$v=19$m=65536,t=0,p=4$2UAGrridhke77taNMhWNhA$IY5HOgqYz4N0uzcztzt1B7u8ScRldrjBtPWsfFTnR8U", `got "t=0"`},
		{"$argon2id$v=19$m=16,t=3,p=4$2UAGrridhke77taNMhWNhA$IY5HOgqYz4N0uzcztzt1B7u8ScRldrjBtPWsfFTnR8U", "less than 8*p"},
		{"$argon2id$v=19$m=65536,t=3,p=4$2UAG$IY5HOgqYz4N0uzcztzt1B7u8ScRldrjBtPWsfFTnR8U", "the salt must be"},
		{"$argon2id$v=19$m=65536,t=3,p=4$2UAGrridhke77taNMhWNhA$IY5HOgqYz4N0uzcztzt1B7u8ScRldrjBtPWsfFTnR8U=", "the hash must be"},
		{"$argon2i$v=19$m=65536,t=3,p=4$2UAGrridhke77taNMhWNhA$IY5HOgqYz4N0uzcztzt1B7u8ScRldrjBtPWsfFTnR8U", "neither"},
		{"change-me", "neither"},
	}
	for _, tt := range tests {
		err := checkPasswordHash(tt.hash)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("checkPasswordHash(%q) = %v, want %q", tt.hash, err, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "2UAGrridhke77taNMhWNhA") {
			t.Errorf("error repeats the salt: %v", err)
		}
	}
}

func TestPluginValidation(t *testing.T) {
	const base = "[[listen]]\naddress = \"127.0.0.1:143\"\ntls = \"none\"\nallow_cleartext_auth = true\n"
	sum := strings.Repeat("ab", 32)
	good := base + "[[plugin]]\nname = \"dir\"\nkind = \"authenticator\"\ncommand = \"/usr/lib/p\"\nsha256 = \"" + sum + "\"\nenv = { TZ = \"UTC\" }\n"
	cfg, err := Parse([]byte(good), "p.toml")
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Plugins[0]
	if p.Timeout.D() != DefaultPluginTimeout || p.OnError != PluginErrorDeny || p.Env["TZ"] != "UTC" || p.CacheTTL != 0 {
		t.Errorf("defaults: %+v", p)
	}
	if s := cfg.Summary(); !strings.Contains(s, "dir authenticator: /usr/lib/p (timeout 3s, on_error=deny)") || strings.Contains(s, "UTC") {
		t.Errorf("summary:\n%s", s)
	}
	if cfg.BearerTokens() {
		t.Error("bearer tokens without [oauth] or a plugin that verifies them")
	}
	cfg, err = Parse([]byte(good+"bearer_tokens = true\n"), "p.toml")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.BearerTokens() || !strings.Contains(cfg.Summary(), "on_error=deny, bearer tokens)") {
		t.Errorf("an authenticator plugin with bearer_tokens: %v\n%s", cfg.BearerTokens(), cfg.Summary())
	}
	for _, tc := range []struct{ text, want string }{
		{"[[plugin]]\nkind = \"router\"\ncommand = \"/p\"\nsha256 = \"" + sum + "\"\n", "p.toml:5: plugin[0].name: required"},
		{"[[plugin]]\nname = \"a\"\ncommand = \"/p\"\nsha256 = \"" + sum + "\"\n", "plugin[0].kind: required"},
		{"[[plugin]]\nname = \"a\"\nkind = \"verifier\"\ncommand = \"/p\"\nsha256 = \"" + sum + "\"\n", "p.toml:7: plugin[0].kind: \"verifier\" is not one of authenticator, router"},
		{"[[plugin]]\nname = \"a\"\nkind = \"router\"\ncommand = \"bin/p\"\nsha256 = \"" + sum + "\"\n", "p.toml:8: plugin[0].command: \"bin/p\" must be an absolute path"},
		{"[[plugin]]\nname = \"a\"\nkind = \"router\"\ncommand = \"/p\"\n", "plugin[0].sha256: required"},
		{"[[plugin]]\nname = \"a\"\nkind = \"router\"\ncommand = \"/p\"\nsha256 = \"abc\"\n", "p.toml:9: plugin[0].sha256: \"abc\" is not 64 hexadecimal digits"},
		{"[[plugin]]\nname = \"a\"\nkind = \"router\"\ncommand = \"/p\"\nsha256 = \"" + sum + "\"\non_error = \"allow\"\n", "p.toml:10: plugin[0].on_error: \"allow\" is not one of deny, next"},
		{"[[plugin]]\nname = \"a\"\nkind = \"router\"\ncommand = \"/p\"\nsha256 = \"" + sum + "\"\nenv = { \"1X\" = \"y\" }\n", "plugin[0].env.1X: \"1X\" is not a variable name"},
		{"[[plugin]]\nname = \"a\"\nkind = \"router\"\ncommand = \"/p\"\nsha256 = \"" + sum + "\"\n[[plugin]]\nname = \"a\"\nkind = \"router\"\ncommand = \"/p\"\nsha256 = \"" + sum + "\"\n",
			"p.toml:11: plugin[1].name: \"a\" is also plugin[0].name"},
		{"[[plugin]]\nname = \"a\"\nkind = \"router\"\ncommand = \"/p\"\nsha256 = \"" + sum + "\"\nretries = 3\n", "p.toml:10: plugin[0].retries: unknown key"},
		{"[[plugin]]\nname = \"a\"\nkind = \"router\"\ncommand = \"/p\"\nsha256 = \"" + sum + "\"\nbearer_tokens = true\n",
			"p.toml:10: plugin[0].bearer_tokens: only an authenticator plugin verifies tokens (this one is \"router\")"},
	} {
		_, err := Parse([]byte(base+tc.text), "p.toml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %s", tc.text, err, tc.want)
		}
	}
}
