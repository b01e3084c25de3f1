package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestAppendRuleErrors(t *testing.T) {
	unified := twoUpstreams + "[[user]]\nname = \"m\"\nmode = \"merge\"\nunified_inbox = true\ndefault_account = \"work\"\n" +
		acct("work", "a", "Work") + acct("home", "b", "Home")
	tests := []struct {
		name, text, key, msg string
	}{
		{"on a route user", minimal + "[[user]]\nname = \"u\"\nupstream = \"a\"\n[[user.append_rule]] #!\nfrom = [\"@x.org\"]\naccount = \"w\"\n",
			"user[0].append_rule", `only for mode = "merge"`},
		{"without unified folders", mergeUser + acct("work", "a", "Work") + "[[user.append_rule]] #!\nfrom = [\"@x.org\"]\naccount = \"work\"\n",
			"user[0].append_rule", "has no effect without unified_inbox or unified_special_use"},
		{"without account", unified + "[[user.append_rule]] #!\nfrom = [\"@x.org\"]\n",
			"user[0].append_rule[0].account", "required"},
		{"unknown account", unified + "[[user.append_rule]]\nfrom = [\"@x.org\"]\naccount = \"play\" #!\n",
			"user[0].append_rule[0].account", `"play" is not the name of one of the user's accounts`},
		{"without addresses", unified + "[[user.append_rule]]\nto = [\"@x.org\"]\naccount = \"home\"\n[[user.append_rule]] #!\naccount = \"home\"\nfrom = []\n",
			"user[0].append_rule[1]", "needs from or to"},
		{"not an address", unified + "[[user.append_rule]]\nfrom = [\n  \"@x.org\",\n  \"example.org\", #!\n]\naccount = \"home\"\n",
			"user[0].append_rule[0].from[1]", `"example.org" is neither an address`},
		{"two at signs", unified + "[[user.append_rule]]\nto = [\"a@b@c\"] #!\naccount = \"home\"\n",
			"user[0].append_rule[0].to[0]", `more than one "@"`},
		{"no domain", unified + "[[user.append_rule]]\nto = [\"carol@\"] #!\naccount = \"home\"\n",
			"user[0].append_rule[0].to[0]", "lacks a domain"},
		{"display name", unified + "[[user.append_rule]]\nto = [\"<carol@x.org>\"] #!\naccount = \"home\"\n",
			"user[0].append_rule[0].to[0]", "write the bare address"},
		{"space", unified + "[[user.append_rule]]\nfrom = [\"carol @x.org\"] #!\naccount = \"home\"\n",
			"user[0].append_rule[0].from[0]", "contains a space"},
		{"unknown key", unified + "[[user.append_rule]]\nfrom = [\"@x.org\"]\ncc = [\"@x.org\"] #!\naccount = \"home\"\n",
			"user[0].append_rule[0].cc", "unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantOneError(t, tt.text, tt.key, tt.msg)
		})
	}
}

func TestAppendRuleAccepted(t *testing.T) {
	text := twoUpstreams + "[[user]]\nname = \"m\"\nmode = \"merge\"\nunified_special_use = [\"sent\"]\ndefault_account = \"work\"\n" +
		"[[user.append_rule]]\nfrom = [\"Carol@Example.ORG\", \"@Lists.example.org\"]\naccount = \"HOME\"\n" +
		"[[user.append_rule]]\nto = [\"@example.org\"]\nfrom = [\"@example.com\"]\naccount = \"home\"\n" +
		acct("work", "a", "Work") + acct("home", "b", "Home")
	cfg, err := Parse([]byte(text), "config.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := []AppendRule{
		{From: []string{"carol@example.org", "@lists.example.org"}, Account: "HOME"},
		{From: []string{"@example.com"}, To: []string{"@example.org"}, Account: "home"},
	}
	if got := cfg.Users[0].AppendRules; !reflect.DeepEqual(got, want) {
		t.Errorf("rules:\n got %+v\nwant %+v", got, want)
	}
	if s := cfg.Summary(); !strings.Contains(s, "  m merge: 2 accounts, 2 append rules (default work)\n") {
		t.Errorf("summary:\n%s", s)
	}
}
