package config

import (
	"reflect"
	"strings"
	"testing"
)

// twoUpstreams is a valid file with upstreams "a" and "b"; mergeUser
// starts a merge user on it for tests to add to.
const (
	twoUpstreams = minimal + "[[upstream]]\nname = \"b\"\naddress = \"b.example.com:993\"\n"
	mergeUser    = twoUpstreams + "[[user]]\nname = \"m\"\nmode = \"merge\"\n"
)

// acct is a [[user.account]] table.
func acct(name, upstream, prefix string, more ...string) string {
	s := "[[user.account]]\nname = \"" + name + "\"\nupstream = \"" + upstream + "\"\nprefix = \"" + prefix + "\"\n"
	for _, m := range more {
		s += m + "\n"
	}
	return s
}

func TestMergeErrors(t *testing.T) {
	two := acct("work", "a", "Work") + acct("home", "b", "Home")
	tests := []struct {
		name, text, key, msg string
	}{
		{"no accounts", minimal + "[[user]] #!\nname = \"m\"\nmode = \"merge\"\n",
			"user[0].account", "needs at least one [[user.account]]"},
		{"unknown mode", minimal + "[[user]]\nname = \"m\"\nmode = \"mix\" #!\n",
			"user[0].mode", `"mix" is not one of route, merge`},
		{"upstream on a merge user", minimal + "[[user]]\nname = \"m\"\nmode = \"merge\"\nupstream = \"a\" #!\n" + acct("w", "a", ""),
			"user[0].upstream", "each [[user.account]] names its upstream"},
		{"upstream_user on a merge user", minimal + "[[user]]\nname = \"m\"\nmode = \"merge\"\nupstream_user = \"x\" #!\n" + acct("w", "a", ""),
			"user[0].upstream_user", "has its own username"},
		{"upstream_password on a merge user", minimal + "[[user]]\nname = \"m\"\npassword_hash = \"" + argon2OK + "\"\nmode = \"merge\"\nupstream_password = \"env:X\" #!\n" + acct("w", "a", ""),
			"user[0].upstream_password", "has its own password"},
		{"accounts on a route user", minimal + "[[user]]\nname = \"u\"\nupstream = \"a\"\n[[user.account]] #!\nname = \"w\"\nupstream = \"a\"\n",
			"user[0].account", `only for mode = "merge"`},
		{"unified_inbox on a route user", minimal + "[[user]]\nname = \"u\"\nupstream = \"a\"\nunified_inbox = true #!\n",
			"user[0].unified_inbox", `only for mode = "merge"`},
		{"unified_special_use on a route user", minimal + "[[user]]\nname = \"u\"\nupstream = \"a\"\nunified_special_use = [\"Sent\"] #!\n",
			"user[0].unified_special_use", `only for mode = "merge"`},
		{"default_account on a route user", minimal + "[[user]]\nname = \"u\"\nupstream = \"a\"\ndefault_account = \"w\" #!\n",
			"user[0].default_account", `only for mode = "merge"`},
		{"account without name", mergeUser + "[[user.account]] #!\nupstream = \"a\"\n",
			"user[0].account[0].name", "required"},
		{"account name twice", mergeUser + acct("work", "a", "Work") + "[[user.account]]\nname = \"Work\" #!\nupstream = \"b\"\nprefix = \"W2\"\n",
			"user[0].account[1].name", `"Work" is also account[0].name`},
		{"account without upstream", mergeUser + acct("work", "a", "Work") + "[[user.account]] #!\nname = \"home\"\nprefix = \"Home\"\n",
			"user[0].account[1].upstream", "required"},
		{"account upstream unknown", mergeUser + "[[user.account]]\nname = \"w\"\nupstream = \"zz\" #!\n",
			"user[0].account[0].upstream", `"zz" is not the name of an [[upstream]]`},
		{"account unknown key", mergeUser + "[[user.account]]\nname = \"w\"\nupstream = \"a\"\nfolder = \"x\" #!\n",
			"user[0].account[0].folder", "unknown key"},
		{"account secret without hash", mergeUser + "[[user.account]]\nname = \"w\"\nupstream = \"a\"\npassword = \"env:W\" #!\n",
			"user[0].account[0].password", "must be passthrough when the user's password_hash is empty"},
		{"account secret malformed", mergeUser + "[[user.account]]\nname = \"w\"\nupstream = \"a\"\npassword = \"hunter2\" #!\n",
			"user[0].account[0].password", `must be "passthrough", "env:NAME"`},
		{"account store without key", minimal + "[[user]]\nname = \"m\"\nmode = \"merge\"\npassword_hash = \"" + argon2OK + "\"\n" +
			"[[user.account]]\nname = \"w\"\nupstream = \"a\"\npassword = \"store\" #!\n",
			"user[0].account[0].password", `"store" needs [secrets] key`},
		{"prefix with slash", mergeUser + "[[user.account]]\nname = \"w\"\nupstream = \"a\"\nprefix = \"Mail/Work\" #!\n",
			"user[0].account[0].prefix", `contains "/"`},
		{"prefix with space", mergeUser + "[[user.account]]\nname = \"w\"\nupstream = \"a\"\nprefix = \"Work \" #!\n",
			"user[0].account[0].prefix", "starts or ends with a space"},
		{"prefix INBOX", mergeUser + "[[user.account]]\nname = \"w\"\nupstream = \"a\"\nprefix = \"inbox\" #!\n",
			"user[0].account[0].prefix", "is INBOX"},
		{"prefix wildcard", mergeUser + "[[user.account]]\nname = \"w\"\nupstream = \"a\"\nprefix = \"W*\" #!\n",
			"user[0].account[0].prefix", "LIST wildcard"},
		{"prefix control", mergeUser + "[[user.account]]\nname = \"w\"\nupstream = \"a\"\nprefix = \"W\\t\" #!\n",
			"user[0].account[0].prefix", "control character"},
		{"prefix twice", mergeUser + acct("work", "a", "Work") + "[[user.account]]\nname = \"home\"\nupstream = \"b\"\nprefix = \"WORK\" #!\n",
			"user[0].account[1].prefix", `"WORK" is also account[0].prefix`},
		{"two primary accounts", mergeUser + acct("work", "a", "") + "[[user.account]] #!\nname = \"home\"\nupstream = \"b\"\n",
			"user[0].account[1].prefix", "account[0] has the empty prefix already"},
		{"prefix is a unified folder", minimal + "[[user]]\nname = \"m\"\nmode = \"merge\"\nunified_special_use = [\"sent\"]\ndefault_account = \"w\"\n" +
			"[[user.account]]\nname = \"w\"\nupstream = \"a\"\nprefix = \"Sent\" #!\n",
			"user[0].account[0].prefix", `is the name of the unified \Sent folder`},
		{"special use unknown", minimal + "[[user]]\nname = \"m\"\nmode = \"merge\"\ndefault_account = \"w\"\n" +
			"unified_special_use = [\n  \"\\\\Sent\",\n  \"\\\\All\", #!\n]\n" + acct("w", "a", "W"),
			"user[0].unified_special_use[1]", `"\\All" is not one of \Sent, \Drafts, \Trash, \Junk, \Archive`},
		{"special use twice", minimal + "[[user]]\nname = \"m\"\nmode = \"merge\"\ndefault_account = \"w\"\n" +
			"unified_special_use = [\"Trash\", \"\\\\TRASH\"] #!\n" + acct("w", "a", "W"),
			"user[0].unified_special_use[1]", `\Trash is listed twice`},
		{"unified inbox without default account", twoUpstreams + "[[user]] #!\nname = \"m\"\nmode = \"merge\"\nunified_inbox = true\n" + two,
			"user[0].default_account", "required with unified_inbox or unified_special_use"},
		{"unified special use without default account", twoUpstreams + "[[user]] #!\nname = \"m\"\nmode = \"merge\"\nunified_special_use = [\"Junk\"]\n" + two,
			"user[0].default_account", "required with unified_inbox"},
		{"default account unknown", twoUpstreams + "[[user]]\nname = \"m\"\nmode = \"merge\"\nunified_inbox = true\ndefault_account = \"play\" #!\n" + two,
			"user[0].default_account", `"play" is not the name of one of the user's accounts`},
		{"second user's account", mergeUser + acct("w", "a", "W") + "[[user]]\nname = \"n\"\nmode = \"merge\"\n" +
			acct("w", "a", "W") + "[[user.account]]\nname = \"v\"\nupstream = \"b\"\nprefix = \"w\" #!\n",
			"user[1].account[1].prefix", `"w" is also account[0].prefix`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantOneError(t, tt.text, tt.key, tt.msg)
		})
	}
}

func TestMergeAccepted(t *testing.T) {
	text := mergeUser + "unified_inbox = true\nunified_special_use = [\"sent\", \"\\\\DRAFTS\", \"\\\\Archive\"]\ndefault_account = \"Home\"\n" +
		acct("work", "a", "", "username = \"carol\"") + acct("home", "b", "Home Mail") + acct("old isp", "a", "Ältere Post")
	cfg, err := Parse([]byte(text), "config.toml")
	if err != nil {
		t.Fatal(err)
	}
	u := cfg.Users[0]
	if u.Mode != ModeMerge || !u.UnifiedInbox || u.DefaultAccount != "Home" {
		t.Errorf("user: %+v", u)
	}
	if want := []string{`\Sent`, `\Drafts`, `\Archive`}; !reflect.DeepEqual(u.UnifiedSpecialUse, want) {
		t.Errorf("unified_special_use = %q, want %q", u.UnifiedSpecialUse, want)
	}
	pass := Secret{Kind: SecretPassthrough}
	want := []Account{
		{Name: "work", Upstream: "a", Username: "carol", Password: pass, Prefix: ""},
		{Name: "home", Upstream: "b", Username: "m", Password: pass, Prefix: "Home Mail"},
		{Name: "old isp", Upstream: "a", Username: "m", Password: pass, Prefix: "Ältere Post"},
	}
	if !reflect.DeepEqual(u.Accounts, want) {
		t.Errorf("accounts:\n got %+v\nwant %+v", u.Accounts, want)
	}
	if s := cfg.Summary(); !strings.Contains(s, "users: 1\n  m merge: 3 accounts\n") {
		t.Errorf("summary:\n%s", s)
	}

	// Stored and file secrets are fine with a password hash; a merge user
	// needs no upstream and no [[route]].
	text = minimal + "[secrets]\nkey = \"env:K\"\n[[user]]\nname = \"m\"\nmode = \"merge\"\npassword_hash = \"" + argon2OK + "\"\n" +
		acct("w", "a", "W", "password = \"store\"") + acct("h", "a", "H", "password = \"oauth2:file:/run/h\"") + acct("p", "a", "P")
	if _, err := Parse([]byte(text), "config.toml"); err != nil {
		t.Fatal(err)
	}
}

func TestNormalizeSpecialUse(t *testing.T) {
	for in, want := range map[string]string{
		`\Sent`: `\Sent`, "sent": `\Sent`, `\JUNK`: `\Junk`, "Archive": `\Archive`, `\drafts`: `\Drafts`, "TRASH": `\Trash`,
		"": "", `\`: "", "All": "", `\\Sent`: "", "Sent ": "",
	} {
		got, ok := NormalizeSpecialUse(in)
		if got != want || ok != (want != "") {
			t.Errorf("NormalizeSpecialUse(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if UnifiedFolderName(`\Junk`) != "Junk" {
		t.Error(`UnifiedFolderName(\Junk)`)
	}
}

// A merge user built in code validates without lines, before defaults.
func TestMergeInCode(t *testing.T) {
	cfg := &Config{
		Listen:    []Listener{{Address: "127.0.0.1:0", TLS: TLSNone, AllowCleartextAuth: true}},
		Upstreams: []Upstream{{Name: "a", Address: "127.0.0.1:143", TLS: TLSNone}},
		Users: []User{{Name: "m", Mode: ModeMerge, UnifiedSpecialUse: []string{"junk"}, DefaultAccount: "x",
			Accounts: []Account{{Name: "x", Upstream: "a"}}}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Users[0].UnifiedSpecialUse[0] != `\Junk` {
		t.Errorf("not normalized: %q", cfg.Users[0].UnifiedSpecialUse)
	}
	cfg.Users[0].Accounts = append(cfg.Users[0].Accounts, Account{Name: "y", Upstream: "a"})
	err := cfg.Validate()
	if err == nil || err.Error() != "config: user[0].account[1].prefix: account[0] has the empty prefix already: only one account can stand at the top level" {
		t.Fatalf("got %v", err)
	}
}
