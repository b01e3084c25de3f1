package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path"
	"strings"
	"time"
)

// Validate checks the whole configuration and returns every problem found,
// joined, in file order; each names its key and, for a Config from Load or
// Parse, its line. It also fills Listener.TrustedNets. It does no I/O: that
// files named here exist is the runtime's concern.
//
// Keys that are empty or zero are accepted where ApplyDefaults would fill
// them, so Validate may run before or after ApplyDefaults.
func (c *Config) Validate() error {
	v := &validator{cfg: c, upstreams: make(map[string]int)}
	v.general()
	v.listeners()
	v.upstreamList()
	v.users()
	v.routes()
	v.security()
	v.plugins()
	return joinErrors(v.errs)
}

type validator struct {
	cfg       *Config
	errs      []*Error
	upstreams map[string]int // name → index of its first definition
}

func (v *validator) add(p keyPath, err error) {
	if err != nil {
		v.errs = append(v.errs, &Error{File: v.cfg.Path, Line: v.cfg.lines.line(p), Key: p.String(), Msg: err.Error()})
	}
}

func (v *validator) addf(p keyPath, format string, args ...any) {
	v.add(p, fmt.Errorf(format, args...))
}

// enum checks an optional enumerated value.
func (v *validator) enum(p keyPath, val string, allowed []string) {
	if val != "" {
		v.add(p, oneOf(val, allowed))
	}
}

func (v *validator) nonNegative(p keyPath, n int) {
	if n < 0 {
		v.addf(p, "must not be negative")
	}
}

func (v *validator) general() {
	c := v.cfg
	v.enum(pathOf("log", "level"), c.Log.Level, logLevels)
	v.enum(pathOf("log", "format"), c.Log.Format, logFormats)
	v.enum(pathOf("tls", "min_version"), c.TLS.MinVersion, tlsVersions)
	if c.TLS.CertFile != "" && c.TLS.KeyFile == "" {
		v.addf(pathOf("tls", "cert_file"), "key_file must be set too")
	}
	if c.TLS.KeyFile != "" && c.TLS.CertFile == "" {
		v.addf(pathOf("tls", "key_file"), "cert_file must be set too")
	}
	if c.Admin.Address != "" {
		v.add(pathOf("admin", "address"), hostPort(c.Admin.Address))
	}

	l := c.Limits
	at := func(key string) keyPath { return pathOf("limits", key) }
	v.nonNegative(at("max_connections"), l.MaxConnections)
	v.nonNegative(at("max_connections_per_ip"), l.MaxConnectionsPerIP)
	v.nonNegative(at("max_line_length"), l.MaxLineLength)
	v.nonNegative(at("max_literal_preauth"), l.MaxLiteralPreAuth)
	v.nonNegative(at("max_auth_failures"), l.MaxAuthFailures)
	if l.MergeConnections < 0 || l.MergeConnections > MaxMergeConnections {
		v.addf(at("merge_connections"), "%d is not between 1 and %d", l.MergeConnections, MaxMergeConnections)
	}
	if l.MaxConnections > 0 && l.MaxConnectionsPerIP > l.MaxConnections {
		v.addf(at("max_connections_per_ip"), "%d is more than max_connections (%d)", l.MaxConnectionsPerIP, l.MaxConnections)
	}
	if l.IdleTimeout > 0 && l.IdleTimeout.D() < MinIdleTimeout {
		v.addf(at("idle_timeout"), "%s is below %s, the least RFC 9051 allows", l.IdleTimeout, shortDuration(MinIdleTimeout))
	}
	if l.AuthDelay != 0 && l.MaxAuthDelay != 0 && l.MaxAuthDelay < l.AuthDelay {
		v.addf(at("max_auth_delay"), "%s is less than auth_delay (%s)", l.MaxAuthDelay, l.AuthDelay)
	}
	for _, d := range []struct {
		key string
		val Duration
	}{
		{"preauth_timeout", l.PreAuthTimeout}, {"idle_timeout", l.IdleTimeout}, {"auth_delay", l.AuthDelay},
		{"max_auth_delay", l.MaxAuthDelay}, {"shutdown_grace", l.ShutdownGrace},
	} {
		if d.val < 0 { // only possible in a Config built in code
			v.addf(at(d.key), "must not be negative")
		}
	}
}

// shortDuration prints 30m rather than 30m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (v *validator) listeners() {
	c := v.cfg
	if len(c.Listen) == 0 {
		v.addf(pathOf("listen"), "at least one [[listen]] is required")
	}
	seen := make(map[string]int)
	needTLS := -1 // first listener that serves TLS
	for i := range c.Listen {
		l := &c.Listen[i]
		at := pathOf("listen", i)
		if err := hostPort(l.Address); err != nil {
			v.add(at.with("address"), err)
		} else if j, dup := seen[l.Address]; dup && !strings.HasSuffix(l.Address, ":0") {
			// Port 0 (any free port, for tests and the demo) never clashes.
			v.addf(at.with("address"), "%s is also listen[%d].address", quoteShort(l.Address), j)
		} else {
			seen[l.Address] = i
		}
		switch l.TLS {
		case "":
			v.addf(at.with("tls"), "required: one of %s", strings.Join(tlsModes, ", "))
		case TLSImplicit, TLSStartTLS:
			if needTLS < 0 {
				needTLS = i
			}
		case TLSNone:
			if !l.AllowCleartextAuth {
				v.addf(at.with("tls"), `"none" needs allow_cleartext_auth = true: without TLS no client could log in`)
			}
		default:
			v.add(at.with("tls"), oneOf(string(l.TLS), tlsModes))
		}

		l.TrustedNets = nil
		for j, s := range l.TrustedProxies {
			p, err := parseNet(s)
			if err != nil {
				v.add(at.with("trusted_proxies", j), err)
				continue
			}
			l.TrustedNets = append(l.TrustedNets, p)
		}
		if l.ProxyProtocol && len(l.TrustedProxies) == 0 {
			v.addf(at.with("proxy_protocol"), "needs trusted_proxies: the networks allowed to send a PROXY header")
		}
	}
	if needTLS >= 0 {
		var missing []string
		if c.TLS.CertFile == "" {
			missing = append(missing, "cert_file")
		}
		if c.TLS.KeyFile == "" {
			missing = append(missing, "key_file")
		}
		if len(missing) > 0 {
			v.addf(pathOf("listen", needTLS, "tls"), "%q needs [tls] %s", c.Listen[needTLS].TLS, strings.Join(missing, " and "))
		}
	}
}

// parseNet parses a CIDR prefix or a bare address (as a /32 or /128).
func parseNet(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%s is not an IP address or CIDR prefix", quoteShort(s))
}

// hostPort checks that addr is host:port with a numeric port (0 allowed,
// for tests that listen on any free port). The host may be empty (all
// interfaces); it is not resolved.
func hostPort(addr string) error {
	if addr == "" {
		return errors.New("required: host:port")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s is not host:port", quoteShort(addr))
	}
	n := 0
	for _, c := range port {
		if c < '0' || c > '9' || n > 65535 {
			n = -1
			break
		}
		n = n*10 + int(c-'0')
	}
	if port == "" || n < 0 || n > 65535 {
		return fmt.Errorf("%s: the port must be a number from 0 to 65535", quoteShort(addr))
	}
	return nil
}

func (v *validator) upstreamList() {
	for i := range v.cfg.Upstreams {
		u := &v.cfg.Upstreams[i]
		at := pathOf("upstream", i)
		if u.Name == "" {
			v.addf(at.with("name"), "required")
		} else if j, dup := v.upstreams[u.Name]; dup {
			v.addf(at.with("name"), "%s is also upstream[%d].name", quoteShort(u.Name), j)
		} else {
			v.upstreams[u.Name] = i
		}
		v.add(at.with("address"), hostPort(u.Address))
		v.enum(at.with("tls"), string(u.TLS), tlsModes)
		if u.TLS == TLSNone && u.CAFile != "" {
			v.addf(at.with("ca_file"), `is set but tls is "none"`)
		}
		if u.PreparedConnections < 0 || u.PreparedConnections > 100 {
			v.addf(at.with("prepared_connections"), "%d is not between 0 and 100", u.PreparedConnections)
		}
	}
}

// upstreamRef checks a reference to an upstream by name.
func (v *validator) upstreamRef(p keyPath, name string) {
	if _, ok := v.upstreams[name]; !ok {
		v.addf(p, "%s is not the name of an [[upstream]]", quoteShort(name))
	}
}

func (v *validator) users() {
	seen := make(map[string]int)
	for i := range v.cfg.Users {
		u := &v.cfg.Users[i]
		at := pathOf("user", i)
		if u.Name == "" {
			v.addf(at.with("name"), "required")
		} else if j, dup := seen[u.Name]; dup {
			v.addf(at.with("name"), "%s is also user[%d].name", quoteShort(u.Name), j)
		} else {
			seen[u.Name] = i
		}
		if u.PasswordHash != "" {
			v.add(at.with("password_hash"), checkPasswordHash(u.PasswordHash))
		}
		v.user(u, at, u.PasswordHash != "")
	}
}

// user checks the mode, upstream and upstream logins of user u;
// proxyChecks says whether the proxy checks the user's password (else
// every upstream password must be the client's own).
func (v *validator) user(u *User, at keyPath, proxyChecks bool) {
	v.enum(at.with("mode"), string(u.Mode), modes)
	if u.Mode == ModeMerge {
		v.mergeUser(u, at, proxyChecks)
		return
	}
	v.notMerge(u, at)
	switch {
	case u.Upstream != "":
		v.upstreamRef(at.with("upstream"), u.Upstream)
	case len(v.cfg.Routes) == 0:
		v.addf(at.with("upstream"), "required: there are no [[route]] rules to choose one")
	}
	if err := u.UpstreamPassword.check(); err != nil {
		v.add(at.with("upstream_password"), err)
	} else if !proxyChecks && !u.UpstreamPassword.IsPassthrough() {
		v.addf(at.with("upstream_password"), "must be passthrough when password_hash is empty: "+
			"the upstream is then the one to check the client's password")
	}
}

// CheckUser checks a user entry made outside the file, such as a router
// plugin's answer, as Validate checks a [[user]] against c's upstreams
// and routes: proxyChecks says whether the proxy verified the user's
// password (else every upstream password must be passthrough). Like
// Load, it normalizes unified_special_use and fills defaults.
func (c *Config) CheckUser(u *User, proxyChecks bool) error {
	v := &validator{cfg: &Config{Upstreams: c.Upstreams, Routes: c.Routes}, upstreams: make(map[string]int)}
	for i, up := range c.Upstreams {
		if _, dup := v.upstreams[up.Name]; !dup {
			v.upstreams[up.Name] = i
		}
	}
	at := pathOf("user")
	if u.Name == "" {
		v.addf(at.with("name"), "required")
	}
	v.user(u, at, proxyChecks)
	if err := joinErrors(v.errs); err != nil {
		return err
	}
	one := Config{Users: []User{*u}}
	one.ApplyDefaults()
	*u = one.Users[0]
	return nil
}

func (v *validator) routes() {
	for i := range v.cfg.Routes {
		r := &v.cfg.Routes[i]
		at := pathOf("route", i)
		if r.Match == "" {
			v.addf(at.with("match"), "required")
		} else if _, err := path.Match(r.Match, ""); err != nil {
			v.addf(at.with("match"), "%s is not a valid glob pattern", quoteShort(r.Match))
		}
		if r.Upstream == "" {
			v.addf(at.with("upstream"), "required")
		} else {
			v.upstreamRef(at.with("upstream"), r.Upstream)
		}
		v.add(at.with("username"), checkTemplate(r.Username))
		v.enum(at.with("verify"), string(r.Verify), verifiers)
		if err := r.Password.check(); err != nil {
			v.add(at.with("password"), err)
		} else if r.Verify != VerifyProxy && !r.Password.IsPassthrough() {
			// Logging in with a stored secret would let any password in.
			v.addf(at.with("password"), `must be passthrough unless verify = "proxy": `+
				"the upstream is then the one to check the client's password")
		}
	}
}

// checkTemplate checks a route username template: literal text with
// {user}, {local} and {domain} placeholders.
func checkTemplate(t string) error {
	for rest := t; ; {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			return nil
		}
		if rest[i] == '}' {
			return fmt.Errorf("%s has a } with no {", quoteShort(t))
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return fmt.Errorf("%s has a { with no }", quoteShort(t))
		}
		switch name := rest[i+1 : i+j]; name {
		case "user", "local", "domain":
		default:
			return fmt.Errorf("{%s} is not one of {user}, {local}, {domain}", name)
		}
		rest = rest[i+j+1:]
	}
}
