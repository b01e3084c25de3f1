package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"imapproxy/config"
	"imapproxy/store"
)

// Login methods, as recorded in Identity.Method, the log and the audit.
const (
	MethodPassword      = "password"       // the proxy checked a password hash
	MethodPasswordTOTP  = "password+totp"  // ... and a TOTP code
	MethodGrace         = "password+grace" // ... within a TOTP grace window
	MethodUpstream      = "upstream"       // the upstream is to check the password
	MethodUpstreamTOTP  = "upstream+totp"  // ... after the proxy checked a TOTP code
	MethodUpstreamGrace = "upstream+grace" // ... within a TOTP grace window
	MethodAppPassword   = "app_password"   // an app password
	MethodOAuth         = "oauth"          // an OAuth bearer token
)

// More client-visible failures; each wraps ErrInvalidCredentials so that
// callers who only care about the IMAP code can test for that.
var (
	// ErrCodeRequired: the user must give a second factor and gave none.
	ErrCodeRequired = fmt.Errorf("%w: a one-time code is required", ErrInvalidCredentials)
	// ErrLocked: too many recent failures for the user or the address.
	ErrLocked = fmt.Errorf("%w: temporarily locked after too many failures", ErrInvalidCredentials)
)

// Policy is the second-factor policy for one login, as the router derives
// it from the user's, the route's and the global settings.
type Policy struct {
	Require2FA bool
	TOTPGrace  time.Duration // 0: the listener's or the global default
}

// Options configure an Authenticator. Only Users is needed for plain
// password checks; Store enables store users, TOTP, app passwords,
// persistent failure counts and the audit.
type Options struct {
	Users []config.User
	Store store.Store
	// Sealer opens TOTP secrets; nil: TOTP enrolments cannot be used.
	Sealer *Sealer
	// OAuth verifies bearer tokens; nil: they are refused (unless a
	// verifier allows them).
	OAuth *OAuthVerifier
	// Verifiers (authenticator plugins) are asked, in order, before the
	// built-in checks; see Verifier.
	Verifiers []Verifier
	// UpstreamVerifies tells, for a login the proxy holds no password for,
	// whether a route lets the upstream check the password.
	UpstreamVerifies func(login string) bool
	// Policy gives the second-factor policy of a login; nil: none.
	Policy func(login string) Policy
	// TOTPGrace is the global default grace (config [auth] totp_grace).
	TOTPGrace time.Duration
	// Lockout: after LockoutThreshold failures within LockoutWindow for a
	// user or an address, logins are refused without being checked.
	LockoutThreshold int
	LockoutWindow    time.Duration
	// Delays: the growing delay after failures.
	DelayBase, DelayMax time.Duration
	// MaxConcurrentHashes bounds the password hashes checked at once
	// (default: GOMAXPROCS). Each argon2id check holds its memory cost (64
	// MiB by default); without a bound, a burst of logins could take
	// gigabytes, and with the cores busy more at once are no faster.
	MaxConcurrentHashes int
	// OnStoreError is told of store failures that do not stop a login
	// (counting, audit); nil: ignored.
	OnStoreError func(error)
	Now          func() time.Time
}

// Authenticator checks credentials: config users, store users, logins the
// upstream verifies, TOTP codes, app passwords and bearer tokens. It is
// safe for concurrent use; build a new one on reload.
type Authenticator struct {
	opts     Options
	users    map[string]config.User // by foldName(Name); first entry wins
	throttle *Throttle
	audit    *auditWriter  // nil without a store
	hashes   chan struct{} // one token per hash check under way
	inHash   atomic.Int32  // checks under way, for tests
	maxInUse atomic.Int32
	// dummy is hashed for unknown logins so that they take as long as a
	// known one. Tests replace it with a cheap hash.
	dummy string
}

// dummyHash has HashPassword's parameters; its salt and key are arbitrary,
// since the result of checking it is discarded.
const dummyHash = "$argon2id$v=19$m=19456,t=2,p=1$ZHVtbXlzYWx0ZHVtbXlzYQ$ZHVtbXlrZXlkdW1teWtleWR1bW15a2V5ZHVtbXlrZXk"

// NewAuthenticator returns an Authenticator. User names match logins under
// ASCII case folding, the router's rule; with duplicates, the first wins.
// With a store it starts the audit writer: call Close when done.
func NewAuthenticator(o Options) *Authenticator {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LockoutWindow <= 0 {
		o.LockoutWindow = DefaultThrottleWindow
	}
	if o.MaxConcurrentHashes <= 0 {
		o.MaxConcurrentHashes = runtime.GOMAXPROCS(0)
	}
	a := &Authenticator{opts: o, users: make(map[string]config.User, len(o.Users)), dummy: dummyHash,
		hashes: make(chan struct{}, o.MaxConcurrentHashes)}
	for _, u := range o.Users {
		k := foldName(u.Name)
		if _, dup := a.users[k]; !dup {
			a.users[k] = u
		}
	}
	to := ThrottleOptions{Base: o.DelayBase, Max: o.DelayMax, Window: o.LockoutWindow, Now: o.Now}
	if o.Store != nil {
		to.Counter = &storeCounter{st: o.Store, window: o.LockoutWindow, onErr: a.storeError}
		a.audit = newAuditWriter(o.Store, a.storeError)
	}
	a.throttle = NewThrottle(to)
	return a
}

// Close writes the audit events still queued and stops the writer. An
// Authenticator with a store must be closed before the store.
func (a *Authenticator) Close() {
	if a.audit != nil {
		a.audit.close()
	}
}

// Key is the name under which a user's TOTP enrolment, app passwords and
// failures are kept: ASCII letters lowercased.
func Key(user string) string { return foldName(user) }

// Credentials are what a client presented to log in.
type Credentials struct {
	Username  string     // login name as sent by the client (for a token: its SASL user, may be empty)
	Password  string     // the client's password (never logged)
	Token     string     // an OAuth bearer token instead of a password
	Remote    netip.Addr // the client's address (after PROXY protocol)
	Mechanism string     // "login", "plain", "oauthbearer", "xoauth2"
	TLS       bool       // whether the client connection is encrypted
	// RemotePort and Listener (its configured address) are for
	// verifiers.
	RemotePort uint16
	Listener   string
	// ListenerGrace is the listener's totp_grace (0: global default).
	ListenerGrace time.Duration
}

// Identity is who a client proved to be, or, with UpstreamVerifies, who
// it claims to be pending the upstream's answer.
type Identity struct {
	// User is the canonical user name: the [[user]] or store name for a
	// known user, else the login name as given (or the token's claim).
	User string
	// UpstreamVerifies says the proxy did not check the password: the
	// caller must log in to the upstream with it and treat the upstream's
	// refusal as ErrInvalidCredentials.
	UpstreamVerifies bool
	// ProxyKnown says the proxy itself verified a user it holds a
	// password for (config or store), so routes with verify = "proxy"
	// apply.
	ProxyKnown bool
	// Method is one of the Method constants.
	Method string
	// Password is what "passthrough" gives the upstream: the client's
	// password without a TOTP code, or the bearer token (Token set). Never
	// log it.
	Password string
	Token    bool
	// App password details, when Method is MethodAppPassword.
	AppPassword   string // its name
	AppPasswordID int64
	ReadOnly      bool
	Account       string
	// Plugin names the verifier that allowed the login (Method
	// MethodPlugin...), and Attributes are its attributes of the user.
	Plugin     string
	Attributes map[string]string

	// totpName is the name the user's TOTP grace is kept under, when it
	// is not User (a verifier's canonical name differs from the login).
	totpName     string
	codeUsed     bool
	grace        time.Duration
	userFailures int // the user's recent failures when the login began
}

// locked reports whether user or ip has too many recent failures, and
// how many the user has.
func (a *Authenticator) locked(user string, ip netip.Addr) (bool, int) {
	u, i := a.throttle.Counts(user, ip)
	return a.opts.LockoutThreshold > 0 && max(u, i) >= a.opts.LockoutThreshold, u
}

// Delay is how long to hold the answer to a failed attempt by user from ip.
func (a *Authenticator) Delay(user string, ip netip.Addr) time.Duration {
	return a.throttle.Delay(user, ip)
}

func (a *Authenticator) storeError(err error) {
	if err != nil && a.opts.OnStoreError != nil {
		a.opts.OnStoreError(err)
	}
}

// Authenticate checks c. A nil error means the client proved who it is,
// except with Identity.UpstreamVerifies, where the upstream's answer to
// Identity.Password decides. Client-visible failures wrap
// ErrInvalidCredentials (ErrCodeRequired, ErrLocked, ErrInvalidToken
// among them); any other error is internal.
func (a *Authenticator) Authenticate(ctx context.Context, c Credentials) (Identity, error) {
	if err := ctx.Err(); err != nil {
		return Identity{}, err
	}
	if c.Token != "" {
		return a.authenticateToken(ctx, c)
	}
	if c.Username == "" || c.Password == "" || len(c.Password) > MaxPasswordLength {
		return Identity{}, ErrInvalidCredentials
	}
	locked, userFailures := a.locked(c.Username, c.Remote)
	if locked {
		return Identity{}, ErrLocked
	}
	id, decided, err := a.external(ctx, c)
	if !decided {
		id, err = a.authenticatePassword(ctx, c)
	}
	id.userFailures = userFailures
	return id, err
}

// authenticatePassword is Authenticate for a password, after the lockout
// check.
func (a *Authenticator) authenticatePassword(ctx context.Context, c Credentials) (Identity, error) {
	acct, err := a.account(ctx, c.Username)
	if err != nil {
		return Identity{}, err
	}
	if acct.kind == accountUnknown {
		// The result does not matter, only the time spent.
		_, _ = a.checkHash(ctx, a.dummy, c.Password)
		return Identity{}, ErrInvalidCredentials
	}
	if id, ok, err := a.appPassword(ctx, acct, c); ok || err != nil {
		return id, err
	}
	var pol Policy
	if a.opts.Policy != nil {
		pol = a.opts.Policy(acct.name)
	}
	grace := firstNonZero(pol.TOTPGrace, c.ListenerGrace, a.opts.TOTPGrace)
	secret, enrolled, err := a.totpSecret(ctx, acct.name)
	if err != nil {
		return Identity{}, err
	}
	if !enrolled {
		if pol.Require2FA {
			return Identity{}, ErrCodeRequired
		}
		return a.checkPassword(ctx, acct, c.Password, "")
	}
	now := a.opts.Now()
	cands := SplitTOTP(c.Password)
	if len(cands) > 0 {
		// Every candidate carries the same code. Where the upstream checks
		// the password only the first candidate is used: each further one
		// would be another login attempt there.
		if step, ok := MatchTOTP(secret, cands[0].Code, now); ok {
			for _, cand := range cands {
				id, err := a.checkPassword(ctx, acct, cand.Password, "totp")
				if errors.Is(err, ErrInvalidCredentials) {
					continue
				}
				if err != nil {
					return Identity{}, err
				}
				fresh, err := a.opts.Store.UseTOTPStep(ctx, Key(acct.name), step, 3*time.Minute)
				if err != nil {
					return Identity{}, fmt.Errorf("auth: record TOTP use: %w", err)
				}
				if !fresh {
					// Clients resend what the user typed for every further
					// connection: within the grace window from the same
					// address that is no replay.
					ok, err := a.inGrace(ctx, acct.name, c.Remote, grace, now)
					if err != nil {
						return Identity{}, err
					}
					if !ok {
						return Identity{}, fmt.Errorf("%w: TOTP code already used", ErrInvalidCredentials)
					}
					return a.checkPassword(ctx, acct, cand.Password, "grace")
				}
				id.codeUsed, id.grace = true, grace
				return id, nil
			}
			return Identity{}, ErrInvalidCredentials
		}
	}
	if ok, err := a.inGrace(ctx, acct.name, c.Remote, grace, now); err != nil {
		return Identity{}, err
	} else if ok {
		return a.checkPassword(ctx, acct, c.Password, "grace")
	}
	if len(cands) > 0 {
		return Identity{}, fmt.Errorf("%w: wrong TOTP code or password", ErrInvalidCredentials)
	}
	return Identity{}, ErrCodeRequired
}

// checkHash is CheckPassword with at most MaxConcurrentHashes at once;
// waiting for a turn ends with ctx.
func (a *Authenticator) checkHash(ctx context.Context, hash, pw string) (bool, error) {
	select {
	case a.hashes <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-a.hashes }()
	n := a.inHash.Add(1)
	defer a.inHash.Add(-1)
	for m := a.maxInUse.Load(); n > m && !a.maxInUse.CompareAndSwap(m, n); m = a.maxInUse.Load() {
	}
	return CheckPassword(hash, pw)
}

// inGrace reports whether user logged in with a code from ip within the
// grace window.
func (a *Authenticator) inGrace(ctx context.Context, user string, ip netip.Addr, grace time.Duration, now time.Time) (bool, error) {
	if grace <= 0 || !ip.IsValid() {
		return false, nil
	}
	until, err := a.opts.Store.TOTPGraceUntil(ctx, Key(user), ip)
	if err != nil {
		return false, fmt.Errorf("auth: read TOTP grace: %w", err)
	}
	return now.Before(until), nil
}

// checkPassword finishes a login with password pw: the proxy checks it
// against the account's hash, or leaves it to the upstream. second is
// "totp", "grace" or "" for the method name.
func (a *Authenticator) checkPassword(ctx context.Context, acct account, pw, second string) (Identity, error) {
	if pw == "" {
		return Identity{}, ErrInvalidCredentials
	}
	id := Identity{User: acct.name, Password: pw}
	if acct.hash == "" {
		id.UpstreamVerifies = true
		id.Method = methodName(MethodUpstream, second)
		return id, nil
	}
	ok, err := a.checkHash(ctx, acct.hash, pw)
	if err != nil {
		return Identity{}, fmt.Errorf("auth: user %q: %w", acct.name, err)
	}
	if !ok {
		return Identity{}, ErrInvalidCredentials
	}
	id.ProxyKnown = true
	id.Method = methodName(MethodPassword, second)
	return id, nil
}

// methodName is the Method for a first factor ("password" or "upstream")
// and a second ("totp", "grace" or "").
func methodName(first, second string) string {
	if second == "" {
		return first
	}
	return first + "+" + second
}

// totpSecret returns the user's confirmed TOTP secret, if enrolled.
func (a *Authenticator) totpSecret(ctx context.Context, user string) (string, bool, error) {
	if a.opts.Store == nil {
		return "", false, nil
	}
	t, err := a.opts.Store.GetTOTP(ctx, Key(user))
	if errors.Is(err, store.ErrNotFound) || err == nil && !t.Confirmed {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("auth: read TOTP enrolment: %w", err)
	}
	if a.opts.Sealer == nil {
		return "", false, fmt.Errorf("auth: user %q has TOTP but no [secrets] key is configured", user)
	}
	secret, err := a.opts.Sealer.Open(t.SealedSecret, TOTPPurpose(user))
	if err != nil {
		return "", false, fmt.Errorf("auth: open TOTP secret of %q: %w", user, err)
	}
	return string(secret), true, nil
}

// TOTPPurpose is the sealing purpose of a user's TOTP secret.
func TOTPPurpose(user string) string { return "totp:" + Key(user) }

// UpstreamPasswordPurpose is the sealing purpose of a user's stored
// upstream password.
func UpstreamPasswordPurpose(user string) string { return "upstream-password:" + Key(user) }

func firstNonZero(ds ...time.Duration) time.Duration {
	for _, d := range ds {
		if d > 0 {
			return d
		}
	}
	return 0
}
