package auth

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Verifier is an outside authority on credentials, such as an
// authenticator plugin (package plugins). Verifiers are asked in order,
// before the built-in checks, once per login.
//
// Verify returns an error only when the login must fail for want of an
// answer (the client gets NO [UNAVAILABLE]); a verifier that is to be
// skipped on failure answers Continue instead.
type Verifier interface {
	Verify(ctx context.Context, c Credentials) (Verdict, error)
}

// Decision is a Verifier's answer.
type Decision int

// Decisions.
const (
	Continue Decision = iota // not known here: the next verifier, then the built-in checks, decide
	Allow                    // the credential is right
	Deny                     // the credential is wrong: a counted failure
)

// Verdict is a Verifier's answer to one login.
type Verdict struct {
	Decision Decision
	// User is the canonical user name for Allow ("": the login as given).
	// Verifiers check that it is a valid user name.
	User string
	// Attributes of the user, for routers. AttrRequire2FA = "true" makes
	// the proxy require a TOTP code.
	Attributes map[string]string
	// Reason is for the log; never a secret.
	Reason string
	// Source names the verifier (the plugin's name).
	Source string
}

// AttrRequire2FA is the attribute with which a verifier asks the proxy to
// require a second factor from the user.
const AttrRequire2FA = "require_2fa"

// Methods of logins a Verifier allowed.
const (
	MethodPlugin      = "plugin"       // a verifier allowed the credential
	MethodPluginTOTP  = "plugin+totp"  // ... and the proxy checked a TOTP code
	MethodPluginGrace = "plugin+grace" // ... within a TOTP grace window
)

// external asks the verifiers about c, after the lockout check. decided
// is false when every verifier answered Continue (or there are none).
//
// An app password of the login is checked first: it is the proxy's own
// credential, not the directory's. With a TOTP enrolment under the login
// name and a password ending in its current code, the verifiers get the
// password without the code. TOTP enrolments and grace windows of users
// a verifier allowed are kept under the login name as typed (up to case).
func (a *Authenticator) external(ctx context.Context, c Credentials) (id Identity, decided bool, err error) {
	if len(a.opts.Verifiers) == 0 {
		return Identity{}, false, nil
	}
	if c.Token == "" && a.opts.Store != nil && LooksLikeAppPassword(c.Password) {
		name := c.Username
		if u, ok := a.users[foldName(name)]; ok {
			name = u.Name
		}
		if id, ok, err := a.appPassword(ctx, account{kind: accountStore, name: name}, c); ok || err != nil {
			return id, true, err
		}
	}
	var tc totpCheck
	if c.Token == "" {
		if tc, err = a.checkCode(ctx, c); err != nil {
			return Identity{}, true, err
		}
		c.Password = tc.password
	}
	for _, v := range a.opts.Verifiers {
		verdict, err := v.Verify(ctx, c)
		if err != nil {
			return Identity{}, true, err
		}
		switch verdict.Decision {
		case Continue:
			continue
		case Deny:
			reason := verdict.Reason
			if reason == "" {
				reason = "denied by plugin " + verdict.Source
			}
			return Identity{}, true, fmt.Errorf("%w: %s", ErrInvalidCredentials, reason)
		case Allow:
			id, err := a.allowed(ctx, c, verdict, tc)
			return id, true, err
		default:
			return Identity{}, true, fmt.Errorf("auth: verifier %s: unknown decision %d", verdict.Source, verdict.Decision)
		}
	}
	return Identity{}, false, nil
}

// totpCheck is what external learnt of a password's TOTP code before
// asking the verifiers.
type totpCheck struct {
	password string // the password for the verifiers (the code removed when it matched)
	enrolled bool   // the login has a confirmed TOTP enrolment
	step     int64  // the matched code's time step
	matched  bool   // the password ended with the current code
	typed    bool   // the password looks like one with a code appended
}

// checkCode looks for the login's TOTP enrolment and, in the password, a
// current code of it. Only the first candidate split counts, as where the
// upstream verifies: each further one would be another question to the
// verifier.
func (a *Authenticator) checkCode(ctx context.Context, c Credentials) (totpCheck, error) {
	tc := totpCheck{password: c.Password}
	secret, enrolled, err := a.totpSecret(ctx, c.Username)
	if err != nil || !enrolled {
		return tc, err
	}
	tc.enrolled = true
	cands := SplitTOTP(c.Password)
	tc.typed = len(cands) > 0
	if tc.typed {
		if step, ok := MatchTOTP(secret, cands[0].Code, a.opts.Now()); ok {
			tc.password, tc.step, tc.matched = cands[0].Password, step, true
		}
	}
	return tc, nil
}

// allowed finishes a login a verifier allowed: the second factor, where
// the policy, the verifier's attributes or an enrolment ask for one.
func (a *Authenticator) allowed(ctx context.Context, c Credentials, v Verdict, tc totpCheck) (Identity, error) {
	user := v.User
	if user == "" {
		user = c.Username
	}
	if user == "" {
		return Identity{}, fmt.Errorf("auth: verifier %s allowed a login without a user name", v.Source)
	}
	id := Identity{User: user, ProxyKnown: true, Method: MethodPlugin, Plugin: v.Source, Attributes: v.Attributes, totpName: c.Username}
	if c.Token != "" {
		id.Password, id.Token = c.Token, true
		return id, nil
	}
	id.Password = tc.password
	var pol Policy
	if a.opts.Policy != nil {
		pol = a.opts.Policy(user)
	}
	require := pol.Require2FA || strings.EqualFold(v.Attributes[AttrRequire2FA], "true")
	grace := firstNonZero(pol.TOTPGrace, c.ListenerGrace, a.opts.TOTPGrace)
	now := a.opts.Now()
	if tc.matched {
		fresh, err := a.opts.Store.UseTOTPStep(ctx, Key(c.Username), tc.step, 3*time.Minute)
		if err != nil {
			return Identity{}, fmt.Errorf("auth: record TOTP use: %w", err)
		}
		if fresh {
			id.Method, id.codeUsed, id.grace = MethodPluginTOTP, true, grace
			return id, nil
		}
	} else if !require && !tc.enrolled {
		return id, nil
	}
	// A replayed code, or none: only a grace window lets the user in.
	if tc.enrolled {
		ok, err := a.inGrace(ctx, c.Username, c.Remote, grace, now)
		if err != nil {
			return Identity{}, err
		}
		if ok {
			id.Method = MethodPluginGrace
			return id, nil
		}
	}
	switch {
	case tc.matched:
		return Identity{}, fmt.Errorf("%w: TOTP code already used", ErrInvalidCredentials)
	case tc.typed:
		return Identity{}, fmt.Errorf("%w: wrong TOTP code or password", ErrInvalidCredentials)
	}
	return Identity{}, ErrCodeRequired
}
