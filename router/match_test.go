package router

import "testing"

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, login string
		want           bool
	}{
		{"example.com", "a@example.com", true},
		{"example.com", "a@EXAMPLE.com", true},
		{"EXAMPLE.com", "a@example.com", true},
		{"example.com", "a@sub.example.com", false},
		{"example.com", "a@example.com.evil", false},
		{"example.com", "example.com", false},    // no domain part
		{"example.com", "a@b@example.com", true}, // last '@' splits
		{"*@example.com", "a@example.com", true},
		{"*@example.com", "A@Example.Com", true},
		{"*@example.com", "a@sub.example.com", false},
		{"*@example.com", "a/b@example.com", false}, // path.Match: '*' stops at '/'
		{"alice*", "alice@example.com", true},
		{"alice*", "Alice", true},
		{"alice*", "malice@example.com", false},
		{"a?c@x.test", "abc@x.test", true},
		{"[ab]*@x.test", "bob@x.test", true},
		{"[ab]*@x.test", "carl@x.test", false},
		{"a@x.test", "a@x.test", true}, // exact whole-login pattern
		{"a@x.test", "A@X.TEST", true},
		{"a@x.test", "b@x.test", false},
		{"*", "anything@at.all", true},
		{"[", "[", false}, // malformed glob
		{"", "a@x.test", false},
		{"x.test", "", false},
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.login); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.login, got, tt.want)
		}
	}
}

func TestExpand(t *testing.T) {
	tests := []struct {
		tmpl, login, want string
	}{
		{"", "a@x.test", "a@x.test"},
		{"{user}", "a@x.test", "a@x.test"},
		{"{local}", "a@x.test", "a"},
		{"{domain}", "a@x.test", "x.test"},
		{"{local}%{domain}", "a@x.test", "a%x.test"},
		{"mbox-{local}", "a@b@x.test", "mbox-a@b"},
		{"{local}", "plain", "plain"},
		{"{domain}", "plain", ""},
		{"{other}-{local}", "a@x.test", "{other}-a"},
		{"{local}", "{user}@x.test", "{user}"}, // no second expansion
		{"fixed", "a@x.test", "fixed"},
	}
	for _, tt := range tests {
		if got := Expand(tt.tmpl, tt.login); got != tt.want {
			t.Errorf("Expand(%q, %q) = %q, want %q", tt.tmpl, tt.login, got, tt.want)
		}
	}
}

func TestEqualNames(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"a@x.test", "A@X.TEST", true},
		{"a@x.test", "a@x.tes", false},
		{"zoë", "ZOË", false},        // only ASCII folds
		{"kate", "\u212aate", false}, // Kelvin sign is not K
		{"", "", true},
	}
	for _, tt := range tests {
		if got := EqualNames(tt.a, tt.b); got != tt.want {
			t.Errorf("EqualNames(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
