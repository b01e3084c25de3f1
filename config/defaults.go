package config

import "time"

// Defaults, applied by ApplyDefaults to keys left out of the file (or set
// to zero, which the schema treats as "default").
const (
	DefaultStateDir  = "/var/lib/imapproxy"
	DefaultLogLevel  = "info"
	DefaultLogFormat = "text"

	DefaultTLSMinVersion = "1.2"

	DefaultMaxConnections      = 10000
	DefaultMaxConnectionsPerIP = 100
	DefaultMaxLineLength       = 8192 // bytes
	DefaultMaxLiteralPreAuth   = 8192 // bytes
	DefaultPreAuthTimeout      = 60 * time.Second
	DefaultIdleTimeout         = 30 * time.Minute
	DefaultMaxAuthFailures     = 3
	DefaultAuthDelay           = 1 * time.Second
	DefaultMaxAuthDelay        = 30 * time.Second
	DefaultShutdownGrace       = 10 * time.Second
	DefaultMergeConnections    = 4

	DefaultUpstreamTLS     = TLSImplicit
	DefaultConnectTimeout  = 10 * time.Second
	DefaultCommandTimeout  = 60 * time.Second
	DefaultPreparedMaxIdle = 30 * time.Second

	DefaultLockoutThreshold = 10
	DefaultLockoutWindow    = 15 * time.Minute
	DefaultTOTPIssuer       = "imapproxy"
	DefaultOAuthUserClaim   = "email"

	DefaultPluginTimeout = 3 * time.Second
	DefaultPluginOnError = PluginErrorDeny

	DefaultUserMode      = ModeRoute
	DefaultRouteUsername = "{user}"
	DefaultRouteVerify   = VerifyUpstream
)

// MinIdleTimeout is the lowest accepted limits.idle_timeout: RFC 9051
// (section 5.4) requires an inactivity autologout timer of at least 30
// minutes once a client is authenticated.
const MinIdleTimeout = 30 * time.Minute

// MaxMergeConnections bounds [limits] merge_connections.
const MaxMergeConnections = 64

// ApplyDefaults fills every key left empty or zero with its default. It is
// the one place defaults are set; Load and Parse call it before Validate. It
// may be called more than once. Listener tls has no default: it must be
// written.
func (c *Config) ApplyDefaults() {
	setString(&c.StateDir, DefaultStateDir)
	setString(&c.Log.Level, DefaultLogLevel)
	setString(&c.Log.Format, DefaultLogFormat)
	setString(&c.TLS.MinVersion, DefaultTLSMinVersion)

	setInt(&c.Auth.LockoutThreshold, DefaultLockoutThreshold)
	setDuration(&c.Auth.LockoutWindow, DefaultLockoutWindow)
	setString(&c.Auth.TOTPIssuer, DefaultTOTPIssuer)
	setString(&c.OAuth.UserClaim, DefaultOAuthUserClaim)

	l := &c.Limits
	setInt(&l.MaxConnections, DefaultMaxConnections)
	setInt(&l.MaxConnectionsPerIP, DefaultMaxConnectionsPerIP)
	setInt(&l.MaxLineLength, DefaultMaxLineLength)
	setInt(&l.MaxLiteralPreAuth, DefaultMaxLiteralPreAuth)
	setDuration(&l.PreAuthTimeout, DefaultPreAuthTimeout)
	setDuration(&l.IdleTimeout, DefaultIdleTimeout)
	setInt(&l.MaxAuthFailures, DefaultMaxAuthFailures)
	setDuration(&l.AuthDelay, DefaultAuthDelay)
	setDuration(&l.MaxAuthDelay, DefaultMaxAuthDelay)
	setDuration(&l.ShutdownGrace, DefaultShutdownGrace)
	setInt(&l.MergeConnections, DefaultMergeConnections)

	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		if u.TLS == "" {
			u.TLS = DefaultUpstreamTLS
		}
		setDuration(&u.ConnectTimeout, DefaultConnectTimeout)
		setDuration(&u.CommandTimeout, DefaultCommandTimeout)
		setDuration(&u.PreparedMaxIdle, DefaultPreparedMaxIdle)
	}
	for i := range c.Users {
		u := &c.Users[i]
		if u.Mode == "" {
			u.Mode = DefaultUserMode
		}
		setString(&u.UpstreamUser, u.Name)
		if u.UpstreamPassword == (Secret{}) {
			u.UpstreamPassword = Secret{Kind: SecretPassthrough}
		}
		for j := range u.Accounts {
			a := &u.Accounts[j]
			setString(&a.Username, u.Name)
			if a.Password == (Secret{}) {
				a.Password = Secret{Kind: SecretPassthrough}
			}
		}
	}
	for i := range c.Plugins {
		p := &c.Plugins[i]
		setDuration(&p.Timeout, DefaultPluginTimeout)
		if p.OnError == "" {
			p.OnError = DefaultPluginOnError
		}
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		setString(&r.Username, DefaultRouteUsername)
		if r.Password == (Secret{}) {
			r.Password = Secret{Kind: SecretPassthrough}
		}
		if r.Verify == "" {
			r.Verify = DefaultRouteVerify
		}
	}
}

func setString(v *string, def string) {
	if *v == "" {
		*v = def
	}
}

func setInt(v *int, def int) {
	if *v == 0 {
		*v = def
	}
}

func setDuration(v *Duration, def time.Duration) {
	if *v == 0 {
		*v = Duration(def)
	}
}
