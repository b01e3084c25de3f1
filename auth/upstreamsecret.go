package auth

import (
	"context"
	"errors"
	"fmt"

	"imapproxy/config"
	"imapproxy/store"
)

// ErrNoPassthrough is a client-visible failure: the login used no password
// the upstream could take (an app password) and the account has no stored
// upstream password.
var ErrNoPassthrough = fmt.Errorf("%w: this login needs the account's upstream password stored in the proxy", ErrInvalidCredentials)

var errNoStoredPassword = errors.New("auth: no upstream password is stored")

// UpstreamSecret returns what to log in to the upstream with for id, given
// the plan's password reference s: for "passthrough" the client's password
// (without its TOTP code) or its bearer token, and for a login that gave
// neither (an app password) the user's stored upstream password; for "env" and "file" as
// ResolveSecret; for "store" the user's upstream password sealed in the
// store. xoauth2 says the value is a bearer token for AUTHENTICATE XOAUTH2.
func (a *Authenticator) UpstreamSecret(ctx context.Context, s config.Secret, id Identity) (value string, xoauth2 bool, err error) {
	switch s.Kind {
	case "", config.SecretPassthrough:
		if id.Password != "" {
			return id.Password, id.Token, nil
		}
		// An app password login gives nothing to pass through; the
		// user's own upstream password, stored by an admin, stands in.
		if a.opts.Store == nil || a.opts.Sealer == nil {
			return "", false, ErrNoPassthrough
		}
		v, err := a.storedUpstreamPassword(ctx, id.User)
		if errors.Is(err, errNoStoredPassword) {
			return "", false, ErrNoPassthrough
		}
		return v, false, err
	case config.SecretStore:
		v, err := a.storedUpstreamPassword(ctx, id.User)
		return v, s.XOAUTH2, err
	default:
		v, err := ResolveSecret(s, "")
		return v, s.XOAUTH2, err
	}
}

func (a *Authenticator) storedUpstreamPassword(ctx context.Context, user string) (string, error) {
	if a.opts.Store == nil || a.opts.Sealer == nil {
		return "", errors.New(`auth: "store" upstream password needs the store and [secrets] key`)
	}
	u, err := a.opts.Store.GetUser(ctx, Key(user))
	if errors.Is(err, store.ErrNotFound) || err == nil && len(u.SealedUpstreamPassword) == 0 {
		return "", fmt.Errorf("%w for %q (imapproxy user upstream-password)", errNoStoredPassword, user)
	}
	if err != nil {
		return "", fmt.Errorf("auth: stored upstream password of %q: %w", user, err)
	}
	v, err := a.opts.Sealer.Open(u.SealedUpstreamPassword, UpstreamPasswordPurpose(user))
	if err != nil {
		return "", fmt.Errorf("auth: open the stored upstream password of %q: %w", user, err)
	}
	return string(v), nil
}
