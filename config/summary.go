package config

import (
	"fmt"
	"strings"
)

// Upstream returns the [[upstream]] named name.
func (c *Config) Upstream(name string) (*Upstream, bool) {
	for i := range c.Upstreams {
		if c.Upstreams[i].Name == name {
			return &c.Upstreams[i], true
		}
	}
	return nil, false
}

// Summary describes the configuration in a few lines for
// "imapproxy check-config": listeners, upstreams, users (with the account
// count and append rules of each merge-mode user), route rules and the admin address. It
// never includes a password hash or a secret reference.
func (c *Config) Summary() string {
	var b strings.Builder
	if c.Path != "" {
		fmt.Fprintf(&b, "config %s\n", c.Path)
	}
	fmt.Fprintf(&b, "listeners: %d\n", len(c.Listen))
	for _, l := range c.Listen {
		fmt.Fprintf(&b, "  %s tls=%s", l.Address, l.TLS)
		if l.ProxyProtocol {
			fmt.Fprintf(&b, " proxy_protocol (from %s)", strings.Join(l.TrustedProxies, ", "))
		}
		if l.AllowCleartextAuth {
			b.WriteString(" allow_cleartext_auth")
		}
		b.WriteByte('\n')
	}
	names := make([]string, len(c.Upstreams))
	for i, u := range c.Upstreams {
		names[i] = u.Name
	}
	fmt.Fprintf(&b, "upstreams: %d", len(c.Upstreams))
	if len(names) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(names, ", "))
	}
	fmt.Fprintf(&b, "\nusers: %d\n", len(c.Users))
	for _, u := range c.Users {
		if u.Mode == ModeMerge {
			fmt.Fprintf(&b, "  %s merge: %d %s", u.Name, len(u.Accounts), plural(len(u.Accounts), "account", "accounts"))
			if n := len(u.AppendRules); n > 0 {
				fmt.Fprintf(&b, ", %d append %s (default %s)", n, plural(n, "rule", "rules"), u.DefaultAccount)
			}
			b.WriteByte('\n')
		}
	}
	fmt.Fprintf(&b, "route rules: %d\n", len(c.Routes))
	for _, r := range c.Routes {
		fmt.Fprintf(&b, "  %s -> %s (verify=%s)\n", r.Match, r.Upstream, r.Verify)
	}
	if len(c.Plugins) > 0 {
		fmt.Fprintf(&b, "plugins: %d\n", len(c.Plugins))
		for _, p := range c.Plugins {
			tokens := ""
			if p.BearerTokens {
				tokens = ", bearer tokens"
			}
			fmt.Fprintf(&b, "  %s %s: %s (timeout %s, on_error=%s%s)\n", p.Name, p.Kind, p.Command, shortDuration(p.Timeout.D()), p.OnError, tokens)
		}
	}
	if c.Admin.Address != "" {
		fmt.Fprintf(&b, "admin: %s\n", c.Admin.Address)
	} else {
		b.WriteString("admin: off\n")
	}
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
