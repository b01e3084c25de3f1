// Package auth checks client credentials: password hashes (argon2id, with
// bcrypt accepted), the decision to let the upstream check a password,
// growing delays after failed logins, and the resolution of upstream
// password references. Later: TOTP, app passwords, OAuth bearer tokens.
//
// Errors are split in two kinds. ErrInvalidCredentials is what the client
// may learn (IMAP [AUTHENTICATIONFAILED]); every other error is internal,
// for the log, and the client gets a generic failure.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"imapproxy/config"
)

// ErrInvalidCredentials means the credentials were wrong, or the login is
// unknown; the two are deliberately indistinguishable. The front door
// answers it with NO [AUTHENTICATIONFAILED].
var ErrInvalidCredentials = errors.New("auth: invalid credentials")

// MaxPasswordLength bounds the password, in bytes, that Authenticate
// considers; longer ones are invalid credentials without any hashing.
const MaxPasswordLength = 1024

// Identity methods.
const (
	MethodPassword = "password" // the proxy checked a password hash
	MethodUpstream = "upstream" // the upstream is to check the password
)

// Credentials are what a client presented to log in.
type Credentials struct {
	Username  string     // login name as sent by the client
	Password  string     // the client's password (never logged)
	Remote    netip.Addr // the client's address (after PROXY protocol)
	Mechanism string     // "LOGIN", "PLAIN", ... as used by the client
	TLS       bool       // whether the client connection is encrypted
}

// Identity is who a client proved to be, or, with UpstreamVerifies, who
// it claims to be pending the upstream's answer.
type Identity struct {
	// User is the canonical user name: the [[user]] name for a listed
	// user, else the login name as given.
	User string
	// UpstreamVerifies says the proxy did not check the password: the
	// caller must log in to the upstream with it and treat the upstream's
	// refusal as ErrInvalidCredentials.
	UpstreamVerifies bool
	// Method is MethodPassword or MethodUpstream.
	Method string
}

// Authenticator checks credentials against the users of the config file
// and the routing decision of who verifies unlisted logins. It is safe for
// concurrent use and immutable; build a new one on reload.
type Authenticator struct {
	users            map[string]config.User // by foldName(Name); first entry wins
	upstreamVerifies func(login string) bool
	// dummy is hashed for unknown logins so that they take as long as a
	// known one. Tests replace it with a cheap hash.
	dummy string
}

// dummyHash has HashPassword's parameters; its salt and key are arbitrary,
// since the result of checking it is discarded.
const dummyHash = "$argon2id$v=19$m=65536,t=3,p=4$ZHVtbXlzYWx0ZHVtbXlzYQ$ZHVtbXlrZXlkdW1teWtleWR1bW15a2V5ZHVtbXlrZXk"

// NewAuthenticator returns an Authenticator for users. upstreamVerifies
// tells, for a login that is not among users, whether a route lets the
// upstream check its password (router.Router.VerifiedByUpstream); nil
// means never. User names match logins under ASCII case folding, the
// router's rule; with duplicates, the first entry wins.
func NewAuthenticator(users []config.User, upstreamVerifies func(login string) bool) *Authenticator {
	a := &Authenticator{
		users:            make(map[string]config.User, len(users)),
		upstreamVerifies: upstreamVerifies,
		dummy:            dummyHash,
	}
	for _, u := range users {
		k := foldName(u.Name)
		if _, dup := a.users[k]; !dup {
			a.users[k] = u
		}
	}
	return a
}

// Authenticate checks c. For a listed user with a password hash it checks
// the password (Method "password"). For a listed user without a hash, or
// an unlisted login that upstreamVerifies accepts, it returns an Identity
// with UpstreamVerifies set (Method "upstream") without looking at the
// password beyond refusing an empty one. Anything else is
// ErrInvalidCredentials, after the time of one hash check for unknown
// logins so that timing does not tell which users exist.
//
// Empty passwords are always refused: some upstreams treat an empty
// password as an anonymous bind that succeeds. A broken hash in the
// configuration is an internal error wrapping ErrMalformedHash.
func (a *Authenticator) Authenticate(ctx context.Context, c Credentials) (Identity, error) {
	if err := ctx.Err(); err != nil {
		return Identity{}, err
	}
	if c.Username == "" || c.Password == "" || len(c.Password) > MaxPasswordLength {
		return Identity{}, ErrInvalidCredentials
	}
	u, listed := a.users[foldName(c.Username)]
	switch {
	case listed && u.PasswordHash != "":
		ok, err := CheckPassword(u.PasswordHash, c.Password)
		if err != nil {
			return Identity{}, fmt.Errorf("auth: user %q: %w", u.Name, err)
		}
		if !ok {
			return Identity{}, ErrInvalidCredentials
		}
		return Identity{User: u.Name, Method: MethodPassword}, nil
	case listed:
		return Identity{User: u.Name, UpstreamVerifies: true, Method: MethodUpstream}, nil
	case a.upstreamVerifies != nil && a.upstreamVerifies(c.Username):
		return Identity{User: c.Username, UpstreamVerifies: true, Method: MethodUpstream}, nil
	default:
		// The result does not matter, only the time spent.
		_, _ = CheckPassword(a.dummy, c.Password)
		return Identity{}, ErrInvalidCredentials
	}
}

// foldName is the key under which a user name is looked up: ASCII letters
// lowercased, every other byte kept. It must agree with router.EqualNames.
func foldName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
