// Package auth checks client credentials: password hashes (argon2id, with
// bcrypt accepted), TOTP codes appended to passwords, app passwords, OAuth
// bearer tokens, the decision to let the upstream check a password,
// growing delays and lockout after failed logins, secrets at rest, and the
// resolution of upstream password references.
//
// Errors are split in two kinds. ErrInvalidCredentials is what the client
// may learn (IMAP [AUTHENTICATIONFAILED]); every other error is internal,
// for the log, and the client gets a generic failure.
package auth

import (
	"errors"
)

// ErrInvalidCredentials means the credentials were wrong, or the login is
// unknown; the two are deliberately indistinguishable. The front door
// answers it with NO [AUTHENTICATIONFAILED].
var ErrInvalidCredentials = errors.New("auth: invalid credentials")

// MaxPasswordLength bounds the password, in bytes, that Authenticate
// considers; longer ones are invalid credentials without any hashing.
const MaxPasswordLength = 1024

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
