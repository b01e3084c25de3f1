package config

import (
	"errors"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Snippets of a valid file for tests to build on.
const (
	tlsOK      = "[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n"
	listenOK   = "[[listen]]\naddress = \"127.0.0.1:993\"\ntls = \"implicit\"\n"
	upstreamOK = "[[upstream]]\nname = \"a\"\naddress = \"imap.example.com:993\"\n"
	minimal    = tlsOK + listenOK + upstreamOK
)

// errorsOf returns the *Error values inside err, in order.
func errorsOf(t *testing.T, err error) []*Error {
	t.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else if err != nil {
		errs = []error{err}
	}
	var out []*Error
	for _, e := range errs {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("error %q is not a *config.Error", e)
		}
		out = append(out, ce)
	}
	return out
}

// markedLine returns the 1-based line of the only line containing "#!",
// or 0.
func markedLine(t *testing.T, text string) int {
	t.Helper()
	line := 0
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "#!") {
			if line != 0 {
				t.Fatal("more than one #! marker")
			}
			line = i + 1
		}
	}
	return line
}

// wantOneError parses text and checks that it fails with exactly one error
// on key, at the line marked "#!" (or no line), whose message contains msg.
func wantOneError(t *testing.T, text, key, msg string) *Error {
	t.Helper()
	cfg, err := Parse([]byte(text), "config.toml")
	if err == nil {
		t.Fatalf("Parse succeeded: %+v", cfg)
	}
	errs := errorsOf(t, err)
	if len(errs) != 1 {
		t.Fatalf("want one error, got %d:\n%v", len(errs), err)
	}
	e := errs[0]
	if line := markedLine(t, text); e.Key != key || e.Line != line || !strings.Contains(e.Msg, msg) {
		t.Fatalf("got  %v\nwant config.toml:%d: %s: ...%s...", e, line, key, msg)
	}
	return e
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct {
		name, text, key, msg string
	}{
		{"top level key", "bogus = 1 #!\n" + minimal, "bogus", "unknown key"},
		{"top level after tables", minimal + "[extra] #!\nkey = 1\n", "extra", "unknown key"},
		{"in [[upstream]] index 2", minimal +
			"[[upstream]]\nname = \"b\"\naddress = \"b:993\"\n" +
			"[[upstream]]\nname = \"c\"\ncolour = \"red\" #!\naddress = \"c:993\"\n",
			"upstream[2].colour", "unknown key"},
		{"in a table", "[limits]\nmax_conections = 5 #!\n" + minimal, "limits.max_conections", "unknown key"},
		{"wrong case", tlsOK + "[[listen]]\nAddress = \"127.0.0.1:993\" #!\naddress = \"127.0.0.1:994\"\ntls = \"implicit\"\n" + upstreamOK,
			"listen[0].Address", `unknown key (did you mean "address"?)`},
		{"inline table", "log = { level = \"info\",\n  colour = \"red\" } #!\n" + minimal, "log.colour", "unknown key"},
		{"dotted", "log.colour = \"red\" #!\n" + minimal, "log.colour", "unknown key"},
		{"sub-table of an array element", minimal + "[[upstream]]\nname = \"b\"\naddress = \"b:1\"\n[upstream.extra] #!\nx = 1\n",
			"upstream[1].extra", "unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantOneError(t, tt.text, tt.key, tt.msg)
		})
	}
}

func TestUnknownKeyMessage(t *testing.T) {
	text := minimal + "[[upstream]]\nname = \"b\"\naddress = \"b:1\"\n[[upstream]]\nname = \"c\"\naddress = \"c:1\"\ntimeout = \"5s\"\n"
	_, err := Parse([]byte(text), "config.toml")
	want := "config.toml:16: upstream[2].timeout: unknown key"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
}

func TestWrongTypes(t *testing.T) {
	tests := []struct {
		name, text, key, msg string
	}{
		{"string as integer", "state_dir = 5 #!\n" + minimal, "state_dir", "wrong type: want string, got integer"},
		{"bool as string", minimal + "[[listen]]\naddress = \":143\"\ntls = \"starttls\"\nproxy_protocol = \"yes\" #!\n",
			"listen[1].proxy_protocol", "wrong type: want boolean, got string"},
		{"int as string", "[limits]\nmax_connections = \"many\" #!\n" + minimal, "limits.max_connections", "wrong type: want integer, got string"},
		{"array as string", minimal + "[[listen]]\naddress = \":143\"\ntls = \"starttls\"\ntrusted_proxies = \"10.0.0.0/8\" #!\n",
			"listen[1].trusted_proxies", "wrong type: want array, got string"},
		{"table as string", "log = \"debug\" #!\n" + minimal, "log", "wrong type: want table, got string"},
		{"array of tables as table", tlsOK + upstreamOK + "[listen] #!\naddress = \":993\"\n", "listen", "wrong type: want array, got table"},
		{"array element not a table", "listen = [1] #!\n" + tlsOK + upstreamOK, "listen[0]", "wrong type: want table, got integer"},
		{"enum", minimal + "[[listen]]\naddress = \":143\"\ntls = \"tlss\" #!\n",
			"listen[1].tls", `"tlss" is not one of implicit, starttls, none`},
		{"enum as integer", minimal + "[[listen]]\naddress = \":143\"\ntls = 1 #!\n", "listen[1].tls", `"1" is not one of`},
		{"duration", "[limits]\nidle_timeout = 3600 #!\n" + minimal, "limits.idle_timeout", `"3600" is not a duration`},
		{"negative duration", minimal + "[[upstream]]\nname = \"b\"\naddress = \"b:1\"\nconnect_timeout = \"-5s\" #!\n",
			"upstream[1].connect_timeout", `"-5s" is negative`},
		{"mode", minimal + "[[user]]\nname = \"u\"\nupstream = \"a\"\nmode = \"mixed\" #!\n", "user[0].mode", `"mixed" is not one of route, merge`},
		{"secret", minimal + "[[user]]\nname = \"u\"\nupstream = \"a\"\npassword_hash = \"$2b$04$abcdefghijklmnopqrstuvABCDEFGHIJKLMNOPQRSTUVWXYZ01234\"\nupstream_password = \"hunter2\" #!\n",
			"user[0].upstream_password", `must be "passthrough", "env:NAME", "file:PATH" or "store"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := wantOneError(t, tt.text, tt.key, tt.msg)
			if strings.Contains(e.Error(), "hunter2") {
				t.Errorf("error repeats a secret: %v", e)
			}
		})
	}
}

func TestDecodeErrorsTogether(t *testing.T) {
	text := "state_dir = 1\n" + minimal + "[[listen]]\naddress = \":143\"\ntls = \"tlss\"\nbogus = 2\n"
	_, err := Parse([]byte(text), "c.toml")
	want := "c.toml:1: state_dir: wrong type: want string, got integer\n" +
		"c.toml:13: listen[1].tls: \"tlss\" is not one of implicit, starttls, none\n" +
		"c.toml:14: listen[1].bogus: unknown key"
	if err == nil || err.Error() != want {
		t.Fatalf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestSyntaxError(t *testing.T) {
	text := minimal + "[[upstream]]\nname = \"b\nport = 1\n"
	_, err := Parse([]byte(text), "config.toml")
	errs := errorsOf(t, err)
	if len(errs) != 1 || errs[0].Line != 11 || !strings.HasPrefix(err.Error(), "config.toml:11: ") {
		t.Fatalf("got %v", err)
	}
	if _, err := Parse([]byte("[x\n"), ""); err == nil || !regexp.MustCompile(`^config:\d+: `).MatchString(err.Error()) {
		t.Fatalf("got %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(t.TempDir() + "/nope.toml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v", err)
	}
}

func TestDefaults(t *testing.T) {
	text := minimal + "[[user]]\nname = \"u\"\nupstream = \"a\"\n[[route]]\nmatch = \"*\"\nupstream = \"a\"\n"
	cfg, err := Parse([]byte(text), "config.toml")
	if err != nil {
		t.Fatal(err)
	}
	pass := Secret{Kind: SecretPassthrough}
	want := &Config{
		StateDir: "/var/lib/imapproxy",
		Log:      Log{Level: "info", Format: "text"},
		TLS:      TLS{CertFile: "c.pem", KeyFile: "k.pem", MinVersion: "1.2"},
		Listen:   []Listener{{Address: "127.0.0.1:993", TLS: TLSImplicit}},
		Limits: Limits{
			MaxConnections: 10000, MaxConnectionsPerIP: 100, MaxLineLength: 8192, MaxLiteralPreAuth: 8192,
			PreAuthTimeout: Duration(60 * time.Second), IdleTimeout: Duration(30 * time.Minute),
			MaxAuthFailures: 3, AuthDelay: Duration(time.Second), MaxAuthDelay: Duration(30 * time.Second),
			ShutdownGrace:    Duration(10 * time.Second),
			MergeConnections: 4,
		},
		Upstreams: []Upstream{{Name: "a", Address: "imap.example.com:993", TLS: TLSImplicit,
			ConnectTimeout: Duration(10 * time.Second), CommandTimeout: Duration(60 * time.Second), PreparedMaxIdle: Duration(30 * time.Second)}},
		Users:  []User{{Name: "u", Mode: ModeRoute, Upstream: "a", UpstreamUser: "u", UpstreamPassword: pass}},
		Routes: []Route{{Match: "*", Upstream: "a", Username: "{user}", Password: pass, Verify: VerifyUpstream}},
		Auth:   AuthPolicy{LockoutThreshold: 10, LockoutWindow: Duration(15 * time.Minute), TOTPIssuer: "imapproxy"},
		OAuth:  OAuth{UserClaim: "email"},
		Path:   "config.toml",
		lines:  cfg.lines,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got  %+v\nwant %+v", cfg, want)
	}

	// Explicit values are kept, and defaults can be applied again.
	cfg.Limits.MaxConnections = 5
	cfg.ApplyDefaults()
	if cfg.Limits.MaxConnections != 5 {
		t.Error("ApplyDefaults overwrote a value")
	}
}

func TestExampleFile(t *testing.T) {
	cfg, err := Load("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listen) != 2 || cfg.Listen[0].TLS != TLSImplicit || cfg.Listen[1].TLS != TLSStartTLS {
		t.Errorf("listeners: %+v", cfg.Listen)
	}
	if cfg.Admin.Address != "127.0.0.1:9143" || len(cfg.Upstreams) != 2 || len(cfg.Routes) != 2 {
		t.Errorf("config: %+v", cfg)
	}
	p, err := parseArgon2id(cfg.Users[0].PasswordHash)
	if err != nil || p.Memory != 65536 || p.Time != 3 || p.Threads != 4 {
		t.Errorf("argon2id parameters: %+v, %v", p, err)
	}
	if cfg.Users[1].PasswordHash != "" || !cfg.Users[1].UpstreamPassword.IsPassthrough() {
		t.Errorf("second user should be verified by the upstream: %+v", cfg.Users[1])
	}

	// Every key of the schema is in the example, set or commented out.
	data, err := os.ReadFile("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range schemaKeys(reflect.TypeFor[Config](), "") {
		name := key[strings.LastIndex(key, ".")+1:]
		if !regexp.MustCompile(`(?m)^(# )?` + regexp.QuoteMeta(name) + ` = `).Match(data) {
			t.Errorf("the example does not show %s", key)
		}
	}
}

// schemaKeys lists the TOML keys of a struct type, recursively.
func schemaKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := tomlName(f)
		if name == "" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(textUnmarshaler) {
			keys = append(keys, schemaKeys(ft, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

func TestSummaryAndUpstream(t *testing.T) {
	cfg, err := Load("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Summary()
	for _, want := range []string{"0.0.0.0:993 tls=implicit", "0.0.0.0:143 tls=starttls", "upstreams: 2 (work, home)",
		"users: 3", "carol@example.com merge: 2 accounts", "route rules: 2", "*@example.com -> work", "admin: 127.0.0.1:9143"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	for _, secret := range []string{"argon2id", "IMAPPROXY_ALICE", "home-master", "passthrough"} {
		if strings.Contains(s, secret) {
			t.Errorf("summary shows %q:\n%s", secret, s)
		}
	}
	u, ok := cfg.Upstream("home")
	if !ok || u.Address != "mail.example.org:143" || u != &cfg.Upstreams[1] {
		t.Errorf("Upstream(home) = %+v, %v", u, ok)
	}
	if _, ok := cfg.Upstream("nope"); ok {
		t.Error("Upstream(nope) found")
	}
}
