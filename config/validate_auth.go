package config

import (
	"errors"
	"net"
	"net/url"
	"strings"
)

// security checks [secrets], [auth] and [oauth], and the secret references
// that need the server key.
func (v *validator) security() {
	c := v.cfg
	if c.Secrets.Key != "" {
		if err := checkKeyRef(c.Secrets.Key); err != nil {
			v.add(pathOf("secrets", "key"), err)
		}
	}
	v.nonNegative(pathOf("auth", "lockout_threshold"), c.Auth.LockoutThreshold)
	if c.Auth.LockoutWindow < 0 {
		v.addf(pathOf("auth", "lockout_window"), "must not be negative")
	}
	if c.OAuth != (OAuth{UserClaim: c.OAuth.UserClaim}) {
		at := func(key string) keyPath { return pathOf("oauth", key) }
		if c.OAuth.Issuer == "" {
			v.addf(at("issuer"), "required when [oauth] is configured")
		}
		if c.OAuth.Audience == "" {
			v.addf(at("audience"), "required when [oauth] is configured")
		}
		if c.OAuth.JWKSURL == "" {
			v.addf(at("jwks_url"), "required when [oauth] is configured")
		} else if err := checkJWKSURL(c.OAuth.JWKSURL); err != nil {
			v.add(at("jwks_url"), err)
		}
	}
	needKey := func(p keyPath, s Secret) {
		if s.Kind == SecretStore && c.Secrets.Key == "" {
			v.addf(p, `"store" needs [secrets] key to decrypt stored passwords`)
		}
	}
	for i := range c.Users {
		needKey(pathOf("user", i).with("upstream_password"), c.Users[i].UpstreamPassword)
		for j, a := range c.Users[i].Accounts {
			needKey(pathOf("user", i, "account", j, "password"), a.Password)
		}
	}
	for i := range c.Routes {
		needKey(pathOf("route", i).with("password"), c.Routes[i].Password)
	}
}

// checkKeyRef checks a server key reference: "file:PATH" or "env:NAME".
func checkKeyRef(ref string) error {
	switch {
	case strings.HasPrefix(ref, "file:") && len(ref) > len("file:"):
		return nil
	case strings.HasPrefix(ref, "env:") && isEnvName(ref[len("env:"):]):
		return nil
	}
	return errors.New(`must be "file:PATH" or "env:NAME" (the key itself does not belong in the config file; make one with "imapproxy keygen")`)
}

// checkJWKSURL wants https, or http to a loopback address (tests, a local
// sidecar).
func checkJWKSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return errors.New("must be an absolute https:// URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("must use https (plain http only to a loopback address)")
	}
	return errors.New("must be an absolute https:// URL")
}
