package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"imapproxy/store"
)

type accountKind int

const (
	accountUnknown  accountKind = iota
	accountConfig               // a [[user]] in the config file
	accountStore                // a user kept in the store
	accountUpstream             // a login the upstream verifies
)

// account is what the proxy knows of a login name.
type account struct {
	kind accountKind
	name string // canonical name
	hash string // "": the upstream checks the password
}

// account finds who login is: a config user, a store user, a login a
// route lets the upstream verify, or nobody.
func (a *Authenticator) account(ctx context.Context, login string) (account, error) {
	if u, ok := a.users[foldName(login)]; ok {
		return account{kind: accountConfig, name: u.Name, hash: u.PasswordHash}, nil
	}
	if a.opts.Store != nil {
		u, err := a.opts.Store.GetUser(ctx, Key(login))
		switch {
		case err == nil && u.Disabled:
			return account{}, nil
		case err == nil:
			return account{kind: accountStore, name: u.Name, hash: u.PasswordHash}, nil
		case !errors.Is(err, store.ErrNotFound):
			return account{}, fmt.Errorf("auth: read user: %w", err)
		}
	}
	if a.opts.UpstreamVerifies != nil && a.opts.UpstreamVerifies(login) {
		return account{kind: accountUpstream, name: login}, nil
	}
	return account{}, nil
}

// appPassword checks c.Password as one of the account's app passwords.
// ok is false when it is not one (the caller goes on with the password).
func (a *Authenticator) appPassword(ctx context.Context, acct account, c Credentials) (Identity, bool, error) {
	if a.opts.Store == nil || !LooksLikeAppPassword(c.Password) {
		return Identity{}, false, nil
	}
	hash := HashAppPassword(c.Password)
	ap, err := a.opts.Store.FindAppPassword(ctx, Key(acct.name), hash)
	if errors.Is(err, store.ErrNotFound) {
		return Identity{}, false, nil
	}
	if err != nil {
		return Identity{}, false, fmt.Errorf("auth: read app password: %w", err)
	}
	if subtle.ConstantTimeCompare(ap.Hash, hash) != 1 || !ap.Revoked.IsZero() {
		return Identity{}, false, nil
	}
	if !ap.Expires.IsZero() && !a.opts.Now().Before(ap.Expires) {
		return Identity{}, true, fmt.Errorf("%w: app password %q expired", ErrInvalidCredentials, ap.Name)
	}
	return Identity{
		User: acct.name, ProxyKnown: acct.kind != accountUpstream, Method: MethodAppPassword,
		AppPassword: ap.Name, AppPasswordID: ap.ID, ReadOnly: ap.ReadOnly, Account: ap.Account,
	}, true, nil
}

// authenticateToken checks an OAuth bearer token.
func (a *Authenticator) authenticateToken(ctx context.Context, c Credentials) (Identity, error) {
	if a.opts.OAuth == nil && len(a.opts.Verifiers) == 0 {
		return Identity{}, fmt.Errorf("%w: bearer tokens are not accepted", ErrInvalidCredentials)
	}
	locked, userFailures := a.locked(c.Username, c.Remote)
	if locked {
		return Identity{}, ErrLocked
	}
	if id, decided, err := a.external(ctx, c); decided {
		id.userFailures = userFailures
		return id, err
	}
	if a.opts.OAuth == nil {
		return Identity{}, fmt.Errorf("%w: bearer tokens are not accepted", ErrInvalidCredentials)
	}
	user, err := a.opts.OAuth.Verify(ctx, c.Token)
	if errors.Is(err, ErrInvalidToken) {
		return Identity{}, fmt.Errorf("%w: %w", ErrInvalidCredentials, err)
	}
	if err != nil {
		return Identity{}, err
	}
	if c.Username != "" && foldName(c.Username) != foldName(user) {
		return Identity{}, fmt.Errorf("%w: the token is for another user", ErrInvalidCredentials)
	}
	name := user
	if u, ok := a.users[foldName(user)]; ok {
		name = u.Name
	}
	return Identity{User: name, ProxyKnown: true, Method: MethodOAuth, Password: c.Token, Token: true, userFailures: userFailures}, nil
}

// Succeeded records a completed login (after the upstream accepted it, when
// it verified): it clears the user's failures, opens the TOTP grace window,
// records app password use and writes the audit event.
func (a *Authenticator) Succeeded(ctx context.Context, id Identity, remote netip.Addr, mechanism string) {
	now := a.opts.Now()
	// Most logins have no failures to clear: Authenticate counted them.
	if id.userFailures > 0 {
		a.throttle.Success(id.User, remote)
	}
	if a.opts.Store == nil {
		return
	}
	if id.codeUsed && id.grace > 0 && remote.IsValid() {
		name := id.User
		if id.totpName != "" {
			name = id.totpName
		}
		a.storeError(a.opts.Store.PutTOTPGrace(ctx, Key(name), remote, now.Add(id.grace)))
	}
	if id.AppPasswordID != 0 {
		a.storeError(a.opts.Store.TouchAppPassword(ctx, id.AppPasswordID, now, remote))
	}
	a.audit.add(store.Event{
		Time: now, User: id.User, Kind: "login", Method: id.Method, Detail: strings.TrimSpace(id.AppPassword + id.Plugin + mechanismDetail(mechanism)), Remote: remote,
	})
}

// Failed records a failed login attempt by login from remote.
func (a *Authenticator) Failed(ctx context.Context, login string, remote netip.Addr, mechanism, reason string) {
	a.throttle.Failure(login, remote)
	if a.opts.Store == nil {
		return
	}
	a.audit.add(store.Event{
		Time: a.opts.Now(), User: login, Kind: "login_failed", Detail: reason + mechanismDetail(mechanism), Remote: remote,
	})
}

func mechanismDetail(m string) string {
	if m == "" {
		return ""
	}
	return " (" + m + ")"
}

// storeCounter keeps Throttle's failure counts in the store, so that they
// survive a restart and are shared by several proxy instances.
type storeCounter struct {
	st     store.Store
	window time.Duration
	onErr  func(error)
}

func (s *storeCounter) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 5*time.Second)
}

func (s *storeCounter) Count(key string, now time.Time) int {
	ctx, cancel := s.ctx()
	defer cancel()
	n, err := s.st.CountFailures(ctx, key, now, s.window)
	s.onErr(err)
	return n
}

// CountMany implements multiCounter: one query for the user and the
// address.
func (s *storeCounter) CountMany(keys []string, now time.Time) []int {
	ctx, cancel := s.ctx()
	defer cancel()
	n, err := s.st.CountFailuresMany(ctx, keys, now, s.window)
	s.onErr(err)
	if err != nil {
		return make([]int, len(keys))
	}
	return n
}

func (s *storeCounter) Add(key string, now time.Time) int {
	ctx, cancel := s.ctx()
	defer cancel()
	n, err := s.st.AddFailure(ctx, key, now, s.window)
	s.onErr(err)
	return n
}

func (s *storeCounter) Reset(key string) {
	ctx, cancel := s.ctx()
	defer cancel()
	s.onErr(s.st.ResetFailures(ctx, key))
}
