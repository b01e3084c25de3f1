package router

import (
	"context"
	"fmt"
	"net/netip"

	"imapproxy/config"
)

// PlanRequest is what a Planner decides on: an authenticated user.
type PlanRequest struct {
	// User is the canonical user name, Login the name the client sent.
	User, Login string
	// Method is how the user logged in (auth's Method constants).
	Method string
	// Verified says whether the proxy verified the credential itself
	// (false: the upstream is to check the password).
	Verified bool
	// Attributes are an authenticator plugin's attributes of the user.
	Attributes map[string]string
	Remote     netip.Addr
	Listener   string
}

// Planner decides plans ahead of the configuration's [[user]] and
// [[route]] entries: a router plugin (package plugins), which does the
// I/O this package does not. Its answers go through Router.PlanFor, so
// they obey the same rules as the configuration's entries.
type Planner interface {
	// PlanFor returns the plan for req and true, or false to leave the
	// decision to the configuration. An error wrapping ErrNoRoute
	// refuses the user; any other error means no answer could be had.
	PlanFor(ctx context.Context, req PlanRequest) (Plan, bool, error)
}

// PlanFor returns the plan of user u, an entry made outside the
// configuration (a router plugin's answer), after checking it as the
// configuration checks a [[user]]: its upstreams must be defined, and
// unless the proxy verified the user (proxyVerified), every upstream
// password must be the client's own. Its PasswordHash is ignored. Errors
// name the offending key.
func (r *Router) PlanFor(u config.User, proxyVerified bool) (Plan, error) {
	if err := CheckLogin(u.Name); err != nil {
		return Plan{}, err
	}
	u.PasswordHash = ""
	u.Accounts = append([]config.Account(nil), u.Accounts...)
	u.UnifiedSpecialUse = append([]string(nil), u.UnifiedSpecialUse...)
	if err := r.check.CheckUser(&u, proxyVerified); err != nil {
		return Plan{}, fmt.Errorf("router: plan for %q: %w", u.Name, err)
	}
	verify := config.VerifyUpstream
	if proxyVerified {
		verify = config.VerifyProxy
	}
	return r.planUserAs(&u, verify)
}
