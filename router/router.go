// Package router makes the proxy's routing decisions: for a login name it
// chooses the session mode, the upstream, the login name and password
// reference to use there, and who verifies the client's password. It is
// pure: no I/O, no clock, no randomness; everything comes from the
// configuration given to New.
package router

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"imapproxy/config"
)

// ErrNoRoute means no [[user]] entry or [[route]] rule admits the login.
// The front door answers it like a wrong password.
var ErrNoRoute = errors.New("router: no route for login")

// ErrBadLogin means the login name cannot be a user name at all: empty,
// longer than MaxLoginLength bytes, not UTF-8, or containing spaces or
// control characters. It wraps ErrNoRoute, so errors.Is(err, ErrNoRoute)
// holds for it too.
var ErrBadLogin = fmt.Errorf("%w: malformed login name", ErrNoRoute)

// MaxLoginLength is the longest login name, in bytes, the router accepts.
const MaxLoginLength = 256

// Plan is the routing decision for one login.
type Plan struct {
	// User is the canonical user name: the [[user]] name for a listed
	// user (spelled as in the configuration), else the login as given.
	User string
	// Mode is what the proxy does with the session: config.ModeRoute
	// (the Upstream fields say where) or config.ModeMerge (Merge says
	// which accounts).
	Mode config.Mode
	// Upstream is the name of the [[upstream]] to log in to (route mode).
	Upstream string
	// UpstreamUser is the login name at the upstream, template expanded.
	UpstreamUser string
	// UpstreamPassword says where the upstream password comes from
	// (resolved by auth.ResolveSecret).
	UpstreamPassword config.Secret
	// Verify says who checks the client's password: the proxy (it holds a
	// hash for the user) or the upstream. For a merge user verified by the
	// upstream, the upstream of the first account is the one that checks
	// it (the configuration requires every account's password to be
	// passthrough then, so every account shares the client's password).
	Verify config.Verify
	// Merge is the merged user's accounts, for config.ModeMerge; nil
	// otherwise.
	Merge *MergePlan
}

// MergePlan is what a merge-mode user's session serves.
type MergePlan struct {
	// Accounts are the user's accounts, in configuration order.
	Accounts []MergeAccount
	// UnifiedInbox makes the top-level INBOX the union of every
	// account's.
	UnifiedInbox bool
	// UnifiedSpecialUse lists the unified special uses (normalized by
	// the config's validation: "\Sent", ...).
	UnifiedSpecialUse []string
	// DefaultAccount is the account that receives messages appended to a
	// unified folder ("" when nothing is unified).
	DefaultAccount string
	// AppendRules choose another account for such messages by their
	// From and To addresses (validated: addresses lowered, accounts
	// known).
	AppendRules []config.AppendRule
}

// MergeAccount is one account of a merged user.
type MergeAccount struct {
	// Name is the account's name, unique within the user.
	Name string
	// Upstream is the name of the [[upstream]] the account lives on.
	Upstream string
	// Username is the login name there (default: the user's name).
	Username string
	// Password says where the account's password comes from (default
	// passthrough: the client's own).
	Password config.Secret
	// Prefix is the folder the account is mounted under ("": the
	// primary account, at the top level).
	Prefix string
}

// Router answers routing questions from one configuration. It copies what
// it needs in New, so later changes to the Config do not affect it; build a
// new Router on reload. A Router is safe for concurrent use.
type Router struct {
	// check holds the upstreams and routes for PlanFor's checks.
	check     *config.Config
	users     []config.User
	routes    []config.Route
	upstreams map[string]bool
	global    config.AuthPolicy
}

// New returns a Router for cfg. It does not validate cfg (that is the
// config package's job) but never panics on an invalid one: a rule with a
// malformed pattern matches nothing, and a plan naming an undefined
// upstream is an error.
func New(cfg *config.Config) *Router {
	r := &Router{upstreams: make(map[string]bool), check: &config.Config{}}
	if cfg == nil {
		return r
	}
	r.check = &config.Config{
		Upstreams: append([]config.Upstream(nil), cfg.Upstreams...),
		Routes:    append([]config.Route(nil), cfg.Routes...),
	}
	r.global = cfg.Auth
	r.users = append([]config.User(nil), cfg.Users...)
	r.routes = append([]config.Route(nil), cfg.Routes...)
	for _, u := range cfg.Upstreams {
		r.upstreams[u.Name] = true
	}
	return r
}

// Plan decides where the session of login goes.
//
// A [[user]] whose name equals login wins; names are compared with ASCII
// case folding on the whole name, local part included, because clients
// capitalize freely and a listed user must not be reachable under a
// second, differently throttled spelling. Non-ASCII letters compare
// exactly. A listed user with an upstream is routed there directly; one
// without an upstream takes the upstream (and, unless the user sets its
// own, the username template and password) of the first [[route]] that
// matches the user's name. Verify is config.VerifyProxy when the user has
// a password hash, else config.VerifyUpstream.
//
// An unlisted login takes the first [[route]] that matches it, with
// Verify from the rule (default upstream). The first matching rule
// decides: if it says verify = "proxy", the login needs a [[user]] entry
// with a hash, so Plan fails closed with ErrNoRoute rather than trying
// later rules. The same holds for a listed user without a hash.
//
// See Match for how rules match. Errors wrap ErrNoRoute (or ErrBadLogin)
// when no route exists; other errors mean the configuration is broken.
func (r *Router) Plan(login string) (Plan, error) {
	if err := CheckLogin(login); err != nil {
		return Plan{}, err
	}
	if u := r.user(login); u != nil {
		return r.planUser(u)
	}
	rule := r.firstRule(login)
	if rule == nil {
		return Plan{}, ErrNoRoute
	}
	verify := rule.Verify
	if verify == "" {
		verify = config.VerifyUpstream
	}
	if verify != config.VerifyUpstream {
		// verify = "proxy" admits only listed users with a hash.
		return Plan{}, ErrNoRoute
	}
	return r.planFromRule(login, rule, verify, "", config.Secret{})
}

// PlanVerified returns the plan for a login the proxy itself verified
// (a user kept in the store, or a bearer token's user): a [[user]] entry
// as in Plan, else the first matching [[route]] whatever its verify, since
// the proxy, not the upstream, vouches for the user.
func (r *Router) PlanVerified(login string) (Plan, error) {
	if err := CheckLogin(login); err != nil {
		return Plan{}, err
	}
	if u := r.user(login); u != nil {
		p, err := r.planUser(u)
		if err == nil {
			p.Verify = config.VerifyProxy
		}
		return p, err
	}
	rule := r.firstRule(login)
	if rule == nil {
		return Plan{}, ErrNoRoute
	}
	return r.planFromRule(login, rule, config.VerifyProxy, "", config.Secret{})
}

// Policy returns the second-factor policy for a login: 2FA is required if
// [auth], the login's [[user]] or its first matching [[route]] requires
// it; the TOTP grace is the user's, else the route's (0: the caller's
// default from the listener or [auth]).
func (r *Router) Policy(login string) (require2FA bool, totpGrace config.Duration) {
	require2FA = r.global.Require2FA
	if u := r.user(login); u != nil {
		require2FA = require2FA || u.Require2FA
		totpGrace = u.TOTPGrace
	}
	if rule := r.firstRule(login); rule != nil {
		require2FA = require2FA || rule.Require2FA
		if totpGrace == 0 {
			totpGrace = rule.TOTPGrace
		}
	}
	return require2FA, totpGrace
}

// VerifiedByUpstream reports whether the proxy holds no password hash for
// login and a [[user]] entry or [[route]] rule routes it with the upstream
// checking the password. It is false for logins with no route.
func (r *Router) VerifiedByUpstream(login string) bool {
	p, err := r.Plan(login)
	return err == nil && p.Verify == config.VerifyUpstream
}

func (r *Router) planUser(u *config.User) (Plan, error) {
	verify := config.VerifyUpstream
	if u.PasswordHash != "" {
		verify = config.VerifyProxy
	}
	return r.planUserAs(u, verify)
}

// planUserAs is planUser with who verifies the password given.
func (r *Router) planUserAs(u *config.User, verify config.Verify) (Plan, error) {
	mode := u.Mode
	if mode == "" {
		mode = config.ModeRoute
	}
	switch mode {
	case config.ModeRoute:
	case config.ModeMerge:
		return r.planMerge(u, verify)
	default:
		return Plan{}, fmt.Errorf("router: user %q: mode %q is not supported", u.Name, mode)
	}
	if u.Upstream == "" {
		rule := r.firstRule(u.Name)
		if rule == nil {
			return Plan{}, ErrNoRoute
		}
		if rule.Verify == config.VerifyProxy && verify != config.VerifyProxy {
			return Plan{}, ErrNoRoute
		}
		p, err := r.planFromRule(u.Name, rule, verify, u.UpstreamUser, u.UpstreamPassword)
		if err != nil {
			return Plan{}, err
		}
		p.Mode = mode
		return p, nil
	}
	if !r.upstreams[u.Upstream] {
		return Plan{}, fmt.Errorf("router: user %q: upstream %q is not defined", u.Name, u.Upstream)
	}
	upUser := u.UpstreamUser
	if upUser == "" {
		upUser = u.Name
	}
	return Plan{
		User:             u.Name,
		Mode:             mode,
		Upstream:         u.Upstream,
		UpstreamUser:     upUser,
		UpstreamPassword: defaultSecret(u.UpstreamPassword),
		Verify:           verify,
	}, nil
}

// planMerge builds the plan of merge-mode user u. Every account's
// upstream must be defined; [[route]] rules play no part.
func (r *Router) planMerge(u *config.User, verify config.Verify) (Plan, error) {
	if len(u.Accounts) == 0 {
		return Plan{}, fmt.Errorf("router: user %q: mode \"merge\" without accounts", u.Name)
	}
	mp := &MergePlan{
		UnifiedInbox:      u.UnifiedInbox,
		UnifiedSpecialUse: append([]string(nil), u.UnifiedSpecialUse...),
		DefaultAccount:    u.DefaultAccount,
		AppendRules:       slices.Clone(u.AppendRules),
	}
	for _, a := range u.Accounts {
		if !r.upstreams[a.Upstream] {
			return Plan{}, fmt.Errorf("router: user %q: account %q: upstream %q is not defined", u.Name, a.Name, a.Upstream)
		}
		username := a.Username
		if username == "" {
			username = u.Name
		}
		mp.Accounts = append(mp.Accounts, MergeAccount{
			Name:     a.Name,
			Upstream: a.Upstream,
			Username: username,
			Password: defaultSecret(a.Password),
			Prefix:   a.Prefix,
		})
	}
	return Plan{User: u.Name, Mode: config.ModeMerge, Verify: verify, Merge: mp}, nil
}

// planFromRule builds a plan for name from rule. A non-empty upUser or
// secret (from a [[user]] entry) overrides the rule's.
func (r *Router) planFromRule(name string, rule *config.Route, verify config.Verify, upUser string, secret config.Secret) (Plan, error) {
	if !r.upstreams[rule.Upstream] {
		return Plan{}, fmt.Errorf("router: route %q: upstream %q is not defined", rule.Match, rule.Upstream)
	}
	if upUser == "" {
		upUser = Expand(rule.Username, name)
		if upUser == "" {
			return Plan{}, fmt.Errorf("%w: route %q: username template %q is empty for this login", ErrNoRoute, rule.Match, rule.Username)
		}
	}
	if secret.Kind == "" {
		secret = rule.Password
	}
	return Plan{
		User:             name,
		Mode:             config.ModeRoute,
		Upstream:         rule.Upstream,
		UpstreamUser:     upUser,
		UpstreamPassword: defaultSecret(secret),
		Verify:           verify,
	}, nil
}

// user returns the first [[user]] entry named login, or nil.
func (r *Router) user(login string) *config.User {
	for i := range r.users {
		if EqualNames(r.users[i].Name, login) {
			return &r.users[i]
		}
	}
	return nil
}

// firstRule returns the first [[route]] matching login, or nil.
func (r *Router) firstRule(login string) *config.Route {
	for i := range r.routes {
		if Match(r.routes[i].Match, login) {
			return &r.routes[i]
		}
	}
	return nil
}

func defaultSecret(s config.Secret) config.Secret {
	if s.Kind == "" {
		return config.Secret{Kind: config.SecretPassthrough}
	}
	return s
}

// EqualNames reports whether two user names are the same user: equal
// under ASCII case folding. Other packages that look users up by name
// (auth) must use the same rule.
func EqualNames(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// toLowerASCII lowercases the ASCII letters of s and leaves all other
// bytes alone, so that non-ASCII text keeps its exact spelling.
func toLowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lowerASCII(c)
	}
	return string(b)
}

// splitLogin splits a login at its last '@'. A login without '@' is all
// local part with an empty domain.
func splitLogin(login string) (local, domain string) {
	i := strings.LastIndexByte(login, '@')
	if i < 0 {
		return login, ""
	}
	return login[:i], login[i+1:]
}
