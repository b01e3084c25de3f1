package proxy

import (
	"context"
	"errors"
	"strings"
	"time"

	"imapproxy/auth"
	"imapproxy/config"
	"imapproxy/router"
	"imapproxy/upstream"
)

// loginFailure is a login refused with a client-visible code and text.
type loginFailure struct {
	code    string // AUTHENTICATIONFAILED, UNAVAILABLE ...
	text    string
	reason  string // for the log; never a secret
	counted bool   // a credential failure: counted against user and address
}

var errAuthFailed = &loginFailure{code: "AUTHENTICATIONFAILED", text: "Authentication failed", reason: "bad credentials", counted: true}

// login checks a password login (LOGIN, AUTHENTICATE PLAIN) and, on
// success, runs the session. done means the connection is finished with
// the front door.
func (ss *session) login(tag string, cr auth.Credentials) (bool, error) {
	if ss.cleartextRefused() {
		return false, ss.refusePrivacy(tag)
	}
	ctx, cancel := context.WithTimeout(ss.ctx, 2*time.Minute)
	defer cancel()
	id, fail := ss.verify(ctx, cr)
	if fail == nil {
		var routed bool
		if routed, fail = ss.startRoute(ctx, tag, cr, id); fail == nil {
			return routed, nil
		}
	}
	return ss.loginFailed(tag, cr, fail)
}

// credentials are the common fields of a login attempt.
func (ss *session) credentials(user, mech string) auth.Credentials {
	return auth.Credentials{
		Username: user, Remote: ss.remote.Addr(), Mechanism: mech, TLS: ss.isTLS,
		ListenerGrace: ss.lis.cfg.TOTPGrace.D(),
		RemotePort:    ss.remote.Port(), Listener: ss.lis.cfg.Address,
	}
}

// verify asks the authenticator and turns its errors into client answers.
func (ss *session) verify(ctx context.Context, cr auth.Credentials) (auth.Identity, *loginFailure) {
	id, err := ss.srv.auth.Authenticate(ctx, cr)
	switch {
	case err == nil:
		return id, nil
	case errors.Is(err, auth.ErrLocked):
		return id, &loginFailure{code: "AUTHENTICATIONFAILED", text: "Too many failed logins, try again later", reason: "locked", counted: true}
	case errors.Is(err, auth.ErrCodeRequired):
		return id, &loginFailure{code: "AUTHENTICATIONFAILED",
			text:   "A one-time code is required: add the 6-digit code from your authenticator app to the end of your password",
			reason: "code required", counted: true}
	case errors.Is(err, auth.ErrInvalidCredentials):
		f := *errAuthFailed
		f.reason = strings.TrimPrefix(err.Error(), "auth: ")
		return id, &f
	default:
		ss.log.Error("authentication error", "user", cr.Username, "err", err)
		return id, &loginFailure{code: "UNAVAILABLE", text: "Authentication is unavailable, try again later", reason: "auth error"}
	}
}

// loginFailed answers a refused login: counted failures are recorded and
// answered after the growing delay; too many on one connection end it.
func (ss *session) loginFailed(tag string, cr auth.Credentials, fail *loginFailure) (bool, error) {
	srv := ss.srv
	ip := ss.remote.Addr()
	srv.metrics.Logins.WithLabelValues(strings.ToLower(fail.code)).Inc()
	// One stable line per failure, for fail2ban; never the password.
	srv.log.Warn("login failed", "user", cr.Username, "remote", ip.String(),
		"mechanism", cr.Mechanism, "reason", fail.reason)
	if fail.counted {
		ss.failures++
		srv.auth.Failed(ss.ctx, cr.Username, ip, cr.Mechanism, fail.reason)
		if !sleepCtx(ss.ctx, srv.auth.Delay(cr.Username, ip)) {
			return true, ss.ctx.Err()
		}
	}
	if err := ss.writef(tag, " NO [", fail.code, "] ", fail.text); err != nil {
		return true, err
	}
	if ss.failures >= srv.cfg.Limits.MaxAuthFailures {
		ss.writef("* BYE Too many failed login attempts")
		return true, nil
	}
	return false, nil
}

// startRoute plans the session of an authenticated identity, logs in to
// its upstream and, on success, prepares the relay (routed = true). A
// merge plan goes to startMerge.
func (ss *session) startRoute(ctx context.Context, tag string, cr auth.Credentials, id auth.Identity) (bool, *loginFailure) {
	srv := ss.srv
	plan, decided, err := ss.pluginPlan(ctx, cr, id)
	if err != nil && !errors.Is(err, router.ErrNoRoute) {
		ss.log.Error("router plugin failed", "user", id.User, "err", err)
		return false, &loginFailure{code: "UNAVAILABLE", text: "Routing is unavailable, try again later", reason: "router plugin"}
	}
	if errors.Is(err, router.ErrNoRoute) {
		f := *errAuthFailed
		f.reason, f.counted = "refused by router plugin", false
		return false, &f
	}
	switch {
	case decided:
	case id.ProxyKnown:
		plan, err = srv.router.PlanVerified(id.User)
	default:
		plan, err = srv.router.Plan(id.User)
	}
	if err != nil {
		if errors.Is(err, router.ErrNoRoute) && id.UpstreamVerifies {
			f := *errAuthFailed
			f.reason = "no route"
			return false, &f
		}
		ss.log.Error("no route for user", "user", id.User, "err", err)
		return false, &loginFailure{code: "UNAVAILABLE", text: "No server is configured for this account", reason: "no route"}
	}
	if plan.Mode == config.ModeMerge {
		return ss.startMerge(ctx, tag, cr, id, plan)
	}
	if plan.Mode != config.ModeRoute {
		ss.log.Error("unsupported mode", "user", id.User, "mode", plan.Mode)
		return false, &loginFailure{code: "UNAVAILABLE", text: "This account's mode is not available", reason: "unsupported mode"}
	}
	pool, ok := srv.upstreams[plan.Upstream]
	if !ok {
		ss.log.Error("unknown upstream in plan", "user", id.User, "upstream", plan.Upstream)
		return false, &loginFailure{code: "UNAVAILABLE", text: "No server is configured for this account", reason: "unknown upstream"}
	}
	secret, xoauth2, err := srv.auth.UpstreamSecret(ctx, plan.UpstreamPassword, id)
	if errors.Is(err, auth.ErrNoPassthrough) {
		return false, &loginFailure{code: "AUTHENTICATIONFAILED", text: "This login cannot be used for this account", reason: "no stored upstream password"}
	}
	if err != nil {
		ss.log.Error("upstream credentials unavailable", "user", id.User, "upstream", plan.Upstream, "err", err)
		return false, &loginFailure{code: "UNAVAILABLE", text: "The account's server is unavailable", reason: "upstream secret"}
	}
	start := time.Now()
	uc, err := pool.Login(ctx, upstream.ClientInfo{Remote: ss.remote, Local: ss.local},
		upstream.Credentials{Username: plan.UpstreamUser, Password: secret, XOAUTH2: xoauth2})
	if err != nil {
		kind := "unavailable"
		if errors.Is(err, upstream.ErrAuthFailed) {
			kind = "auth"
		}
		srv.metrics.UpstreamFailure.WithLabelValues(plan.Upstream, kind).Inc()
		if kind == "auth" && plan.UpstreamPassword.IsPassthrough() {
			f := *errAuthFailed
			f.reason = "rejected by upstream"
			return false, &f
		}
		ss.log.Error("upstream login failed", "user", id.User, "upstream", plan.Upstream, "err", err)
		return false, &loginFailure{code: "UNAVAILABLE", text: "The account's server is unavailable, try again later", reason: "upstream " + kind}
	}
	srv.metrics.UpstreamDial.WithLabelValues(plan.Upstream).Observe(time.Since(start).Seconds())
	srv.metrics.Logins.WithLabelValues("ok").Inc()
	ss.log = ss.log.With("user", id.User, "upstream", plan.Upstream)
	attrs := []any{"method", id.Method, "mechanism", cr.Mechanism}
	if id.AppPassword != "" {
		attrs = append(attrs, "app_password", id.AppPassword)
	}
	if id.Plugin != "" {
		attrs = append(attrs, "plugin", id.Plugin)
	}
	ss.log.Info("login", attrs...)
	ss.runRoute(tag, uc, plan.Upstream, id)
	// Recorded after the client has its OK: the store's writes are not
	// part of the login's latency.
	srv.auth.Succeeded(ss.ctx, id, ss.remote.Addr(), cr.Mechanism)
	return true, nil
}

// pluginPlan asks the router plugins, if any, for the plan of id.
func (ss *session) pluginPlan(ctx context.Context, cr auth.Credentials, id auth.Identity) (router.Plan, bool, error) {
	if ss.srv.planner == nil {
		return router.Plan{}, false, nil
	}
	return ss.srv.planner.PlanFor(ctx, router.PlanRequest{
		User: id.User, Login: cr.Username, Method: id.Method, Verified: id.ProxyKnown,
		Attributes: id.Attributes, Remote: cr.Remote, Listener: cr.Listener,
	})
}
