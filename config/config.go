// Package config holds imapproxy's configuration schema, its strict TOML
// decoding and its validation. It does no network I/O: it reads the config
// file and nothing else.
package config

import (
	"net/netip"
	"time"
)

// TLSMode says how a listener or an upstream connection uses TLS.
type TLSMode string

// TLS modes for listeners and upstreams.
const (
	TLSImplicit TLSMode = "implicit" // TLS from the first byte (port 993)
	TLSStartTLS TLSMode = "starttls" // plaintext greeting, STARTTLS upgrade (port 143)
	TLSNone     TLSMode = "none"     // plaintext only
)

// Mode is what the proxy does with a user's session after login.
type Mode string

// Session modes.
const (
	ModeRoute Mode = "route" // relay the session to one upstream
	ModeMerge Mode = "merge" // serve several upstream accounts as one
)

// Verify says who checks a user's password.
type Verify string

// Password verifiers.
const (
	VerifyProxy    Verify = "proxy"    // the proxy checks a password hash it holds
	VerifyUpstream Verify = "upstream" // the upstream checks the password; the proxy adds its own checks
)

// Config is the whole configuration file.
type Config struct {
	// StateDir is where the proxy keeps its state (databases, generated files).
	StateDir  string     `toml:"state_dir"`
	Log       Log        `toml:"log"`
	TLS       TLS        `toml:"tls"`
	Listen    []Listener `toml:"listen"`
	Admin     Admin      `toml:"admin"`
	Limits    Limits     `toml:"limits"`
	Upstreams []Upstream `toml:"upstream"`
	Users     []User     `toml:"user"`
	Routes    []Route    `toml:"route"`
	Secrets   Secrets    `toml:"secrets"`
	Auth      AuthPolicy `toml:"auth"`
	OAuth     OAuth      `toml:"oauth"`
	Plugins   []Plugin   `toml:"plugin"`

	// Path is the file the configuration was read from (not a TOML key).
	Path string `toml:"-"`

	// lines maps key paths to file lines for Validate's messages; nil for
	// a Config built in code.
	lines *lineIndex
}

// Log configures logging.
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text or json
}

// TLS holds the proxy's own certificate, served on TLS and STARTTLS
// listeners. The pair is read again on SIGHUP.
type TLS struct {
	CertFile   string `toml:"cert_file"`
	KeyFile    string `toml:"key_file"`
	MinVersion string `toml:"min_version"` // "1.2" (default) or "1.3"
}

// Listener is one address the proxy accepts client connections on.
type Listener struct {
	Address string  `toml:"address"`
	TLS     TLSMode `toml:"tls"`
	// ProxyProtocol requires a PROXY protocol v1/v2 header from peers in
	// TrustedProxies; connections from other peers are served with their own
	// address, and a header from them is not read as one (IMAP servers speak
	// first, so the proxy does not wait to see whether a header comes).
	ProxyProtocol  bool     `toml:"proxy_protocol"`
	TrustedProxies []string `toml:"trusted_proxies"`
	// AllowCleartextAuth permits LOGIN and AUTHENTICATE before TLS. Only for
	// loopback or behind a TLS-terminating balancer.
	AllowCleartextAuth bool `toml:"allow_cleartext_auth"`
	// TOTPGrace lets a user who logged in with a code log in again from the
	// same address without one for this long (0: as [auth]).
	TOTPGrace Duration `toml:"totp_grace"`

	// TrustedNets is TrustedProxies parsed by Validate.
	TrustedNets []netip.Prefix `toml:"-"`
}

// Admin configures the HTTP endpoint for /metrics and /healthz.
type Admin struct {
	Address string `toml:"address"` // empty: no admin endpoint
}

// Limits bound what a client can make the proxy do.
type Limits struct {
	MaxConnections      int      `toml:"max_connections"`        // all clients; 0 = default
	MaxConnectionsPerIP int      `toml:"max_connections_per_ip"` // per client address; 0 = default
	MaxLineLength       int      `toml:"max_line_length"`        // bytes of one command line before login
	MaxLiteralPreAuth   int      `toml:"max_literal_preauth"`    // bytes of one literal before login
	PreAuthTimeout      Duration `toml:"preauth_timeout"`        // idle time allowed before login
	IdleTimeout         Duration `toml:"idle_timeout"`           // idle time allowed after login (>= 30m; not while in IDLE)
	MaxAuthFailures     int      `toml:"max_auth_failures"`      // failed logins before the connection is closed
	AuthDelay           Duration `toml:"auth_delay"`             // first delay after a failed login
	MaxAuthDelay        Duration `toml:"max_auth_delay"`         // ceiling of the growing delay
	ShutdownGrace       Duration `toml:"shutdown_grace"`         // how long SIGTERM waits for sessions
	// MergeConnections bounds the upstream connections a merged user's
	// hub keeps per account for commands and syncs (its watchers have as
	// many again at most), however many sessions the user has.
	MergeConnections int `toml:"merge_connections"`
}

// Upstream is an IMAP server the proxy logs in to.
type Upstream struct {
	Name    string  `toml:"name"`
	Address string  `toml:"address"` // host:port
	TLS     TLSMode `toml:"tls"`
	// ServerName overrides the name checked in the upstream's certificate
	// (default: the host of Address).
	ServerName         string `toml:"server_name"`
	CAFile             string `toml:"ca_file"` // PEM roots; empty: system roots
	InsecureSkipVerify bool   `toml:"insecure_skip_verify"`
	// SendClientIP sends IMAP ID with x-originating-ip, x-originating-port
	// and x-connected-ip before login.
	SendClientIP   bool     `toml:"send_client_ip"`
	ConnectTimeout Duration `toml:"connect_timeout"`
	CommandTimeout Duration `toml:"command_timeout"`
	// PreparedConnections keeps this many connections dialed, secured and
	// greeted ahead of logins, so that a login waits only for LOGIN itself.
	// 0: dial at login. They are replaced after PreparedMaxIdle.
	PreparedConnections int      `toml:"prepared_connections"`
	PreparedMaxIdle     Duration `toml:"prepared_max_idle"`
}

// User is a user listed in the config file.
type User struct {
	Name string `toml:"name"`
	// PasswordHash is an argon2id (PHC string) or bcrypt hash. Empty means
	// the upstream checks the password (Verify = "upstream").
	PasswordHash string `toml:"password_hash"`
	Mode         Mode   `toml:"mode"`
	// Upstream is the name of the upstream for route mode. Empty: the
	// [[route]] rules choose.
	Upstream string `toml:"upstream"`
	// UpstreamUser is the login name at the upstream (default: Name).
	UpstreamUser string `toml:"upstream_user"`
	// UpstreamPassword is "passthrough" (the client's own password, the
	// default), "env:NAME" or "file:PATH".
	UpstreamPassword Secret `toml:"upstream_password"`
	// Require2FA refuses logins without a second factor (a TOTP code, an
	// app password or an OAuth token).
	Require2FA bool `toml:"require_2fa"`
	// TOTPGrace overrides the listener's and [auth]'s grace for this user.
	TOTPGrace Duration `toml:"totp_grace"`

	// Accounts are the upstream accounts of a merge-mode user
	// ([[user.account]]); route-mode users have none.
	Accounts []Account `toml:"account"`
	// UnifiedInbox makes the top-level INBOX of a merge user the union of
	// all accounts' INBOXes (each account's own stays at "<prefix>/INBOX").
	// Without it INBOX is the primary account's INBOX, or, when no account
	// has the empty prefix, the first account's.
	UnifiedInbox bool `toml:"unified_inbox"`
	// UnifiedSpecialUse lists the special uses (RFC 6154: \Sent, \Drafts,
	// \Trash, \Junk, \Archive) whose folders are unified across accounts
	// into one top-level folder ("Sent", "Drafts", ...). The file may write
	// them without the backslash and in any case; Validate normalizes them
	// to the backslash form (see NormalizeSpecialUse).
	UnifiedSpecialUse []string `toml:"unified_special_use"`
	// DefaultAccount names the account that receives APPENDs to unified
	// folders when no rule picks another; required with UnifiedInbox or
	// UnifiedSpecialUse.
	DefaultAccount string `toml:"default_account"`
	// AppendRules choose the account that receives a message appended to
	// a unified folder ([[user.append_rule]]): the first rule that matches
	// the message's From and To wins, else DefaultAccount.
	AppendRules []AppendRule `toml:"append_rule"`
}

// AppendRule places messages appended to a merge user's unified folders
// (unified INBOX, unified special-use folders) by their addresses. A rule
// matches when each of its non-empty lists matches: From when one of the
// message's From addresses is in From, To when one of its To addresses is
// in To. An entry is an address ("carol@example.com") or a domain
// ("@example.com"), compared without case; Validate lowers them.
type AppendRule struct {
	From []string `toml:"from"`
	To   []string `toml:"to"`
	// Account is the name of the user's account the message goes to.
	Account string `toml:"account"`
}

// Account is one upstream account of a merge-mode user.
type Account struct {
	// Name identifies the account within its user (unique, compared
	// case-insensitively); it names the account in logs and in the store.
	Name string `toml:"name"`
	// Upstream is the name of the [[upstream]] the account lives on.
	Upstream string `toml:"upstream"`
	// Username is the login name at the upstream (default: the user's name).
	Username string `toml:"username"`
	// Password as in User.UpstreamPassword; default "passthrough" (the
	// client's own password, for accounts that share it). Any other value
	// needs a password_hash on the user, as the proxy must then check the
	// client's password itself.
	Password Secret `toml:"password"`
	// Prefix is the folder the account is mounted under ("Work" shows the
	// account's folders as "Work/..."). At most one account of a user may
	// have the empty prefix: the primary account, whose folders stand at
	// the top level.
	Prefix string `toml:"prefix"`
}

// Route is a rule for users not listed in [[user]] (or listed without an
// upstream): the first rule whose Match fits the login name wins.
type Route struct {
	// Match is a glob on the whole login name ("*@example.com",
	// "alice*") or on its domain ("example.com").
	Match    string `toml:"match"`
	Upstream string `toml:"upstream"`
	// Username is the upstream login name: a template with {user} (the
	// whole login name), {local} and {domain}. Default "{user}".
	Username string `toml:"username"`
	// Password as in User.UpstreamPassword; default "passthrough".
	Password Secret `toml:"password"`
	// Verify is "upstream" (default: the upstream checks the password) or
	// "proxy" (the login name must be a [[user]] with a password_hash).
	Verify Verify `toml:"verify"`
	// Require2FA and TOTPGrace as for a user, for the logins this rule
	// matches.
	Require2FA bool     `toml:"require_2fa"`
	TOTPGrace  Duration `toml:"totp_grace"`
}

// Secrets configures the server key that encrypts secrets at rest (TOTP
// secrets, stored upstream passwords).
type Secrets struct {
	// Key is "file:PATH" (a file only its owner can read) or "env:NAME",
	// holding a key made by "imapproxy keygen". Without it, TOTP and
	// stored upstream passwords are unavailable.
	Key string `toml:"key"`
}

// AuthPolicy is the proxy-wide login policy.
type AuthPolicy struct {
	// LockoutThreshold locks logins for a user, or from a client address,
	// after this many failures within LockoutWindow (0: default).
	LockoutThreshold int      `toml:"lockout_threshold"`
	LockoutWindow    Duration `toml:"lockout_window"`
	// Require2FA for everyone (users and routes can also require it).
	Require2FA bool `toml:"require_2fa"`
	// TOTPGrace is the default grace after a login with a code (0: none).
	TOTPGrace Duration `toml:"totp_grace"`
	// TOTPIssuer names the service in authenticator apps.
	TOTPIssuer string `toml:"totp_issuer"`
}

// OAuth configures OAuth 2.0 bearer tokens (AUTHENTICATE OAUTHBEARER and
// XOAUTH2) verified as JWTs. Empty JWKSURL: bearer tokens are not offered.
type OAuth struct {
	Issuer    string `toml:"issuer"`
	Audience  string `toml:"audience"`
	JWKSURL   string `toml:"jwks_url"`
	UserClaim string `toml:"user_claim"` // the claim holding the login name; default "email"
}

// PluginKind says what a plugin decides.
type PluginKind string

// Plugin kinds.
const (
	PluginAuthenticator PluginKind = "authenticator" // checks credentials
	PluginRouter        PluginKind = "router"        // chooses route or merge plans
)

// PluginOnError says what a login gets when a plugin fails (crashes, hangs
// past its timeout, answers nonsense).
type PluginOnError string

// Plugin failure policies.
const (
	PluginErrorDeny PluginOnError = "deny" // NO [UNAVAILABLE]: fail closed
	PluginErrorNext PluginOnError = "next" // the next plugin, then the built-in checks or rules, decide
)

// Plugin is an out-of-process program (hashicorp/go-plugin over gRPC)
// that decides logins or routes, see package plugins.
type Plugin struct {
	// Name identifies the plugin in logs and metrics (unique).
	Name string     `toml:"name"`
	Kind PluginKind `toml:"kind"`
	// Command is the plugin's executable, an absolute path; Args are
	// passed to it.
	Command string   `toml:"command"`
	Args    []string `toml:"args"`
	// SHA256 is the executable's checksum in hex; a file that does not
	// match is not started.
	SHA256 string `toml:"sha256"`
	// Timeout bounds each call (default 3s).
	Timeout Duration `toml:"timeout"`
	// OnError is "deny" (default) or "next".
	OnError PluginOnError `toml:"on_error"`
	// Env is the plugin's whole environment: the proxy's own (which may
	// hold secrets) is not passed on.
	Env map[string]string `toml:"env"`
	// CacheTTL keeps answers this long (0: every login asks the plugin).
	CacheTTL Duration `toml:"cache_ttl"`
	// BearerTokens says that an authenticator plugin verifies OAuth 2.0
	// bearer tokens: AUTHENTICATE OAUTHBEARER and XOAUTH2 are offered even
	// without [oauth].
	BearerTokens bool `toml:"bearer_tokens"`
}

// BearerTokens reports whether logins with OAuth 2.0 bearer tokens can
// be verified: [oauth] is configured or an authenticator plugin says it
// verifies them.
func (c *Config) BearerTokens() bool {
	if c.OAuth.Enabled() {
		return true
	}
	for _, p := range c.Plugins {
		if p.Kind == PluginAuthenticator && p.BearerTokens {
			return true
		}
	}
	return false
}

// Enabled reports whether bearer tokens are configured.
func (o OAuth) Enabled() bool { return o.JWKSURL != "" }

// SecretKind says where a Secret's value comes from.
type SecretKind string

// Secret kinds.
const (
	SecretPassthrough SecretKind = "passthrough" // the client's own password
	SecretEnv         SecretKind = "env"         // an environment variable
	SecretFile        SecretKind = "file"        // a file's contents, trailing newline removed
	SecretStore       SecretKind = "store"       // the user's upstream password sealed in the store
)

// Secret is a reference to a password: "passthrough", "env:NAME",
// "file:PATH" or "store", optionally prefixed with "oauth2:" when the value
// is an OAuth 2.0 access token to log in to the upstream with XOAUTH2. The
// value itself is never held in the config.
type Secret struct {
	Kind    SecretKind
	Ref     string // variable name or file path
	XOAUTH2 bool   // the value is a bearer token for AUTHENTICATE XOAUTH2
}

// Duration is a time.Duration written as a Go duration string ("30s", "5m").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
