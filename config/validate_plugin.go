package config

import (
	"encoding/hex"
	"path/filepath"
	"sort"
	"strings"
)

// plugins checks the [[plugin]] entries. That the command exists and
// matches its checksum is checked when the plugin is started (and by
// "imapproxy check-config").
func (v *validator) plugins() {
	seen := make(map[string]int)
	for i := range v.cfg.Plugins {
		p := &v.cfg.Plugins[i]
		at := pathOf("plugin", i)
		switch {
		case p.Name == "":
			v.addf(at.with("name"), "required")
		case strings.ContainsAny(p.Name, " \t\r\n\"/\\"):
			v.addf(at.with("name"), "%s: use letters, digits, '-', '_' and '.'", quoteShort(p.Name))
		default:
			if j, dup := seen[p.Name]; dup {
				v.addf(at.with("name"), "%s is also plugin[%d].name", quoteShort(p.Name), j)
			} else {
				seen[p.Name] = i
			}
		}
		if p.Kind == "" {
			v.addf(at.with("kind"), "required: one of %s", strings.Join(pluginKinds, ", "))
		} else {
			v.enum(at.with("kind"), string(p.Kind), pluginKinds)
		}
		switch {
		case p.Command == "":
			v.addf(at.with("command"), "required: the plugin's executable")
		case !filepath.IsAbs(p.Command):
			v.addf(at.with("command"), "%s must be an absolute path", quoteShort(p.Command))
		}
		if p.SHA256 == "" {
			v.addf(at.with("sha256"), "required: the executable's checksum (sha256sum FILE), so that a replaced file is not run")
		} else if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != 32 {
			v.addf(at.with("sha256"), "%s is not 64 hexadecimal digits", quoteShort(p.SHA256))
		}
		if p.Timeout < 0 {
			v.addf(at.with("timeout"), "must not be negative")
		}
		if p.CacheTTL < 0 {
			v.addf(at.with("cache_ttl"), "must not be negative")
		}
		if p.BearerTokens && p.Kind != PluginAuthenticator {
			v.addf(at.with("bearer_tokens"), "only an authenticator plugin verifies tokens (this one is %s)", quoteShort(string(p.Kind)))
		}
		v.enum(at.with("on_error"), string(p.OnError), onErrors)
		names := make([]string, 0, len(p.Env))
		for k := range p.Env {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			if !isEnvName(k) {
				v.addf(at.with("env", k), "%s is not a variable name (letters, digits and _, not starting with a digit)", quoteShort(k))
			}
		}
	}
}
