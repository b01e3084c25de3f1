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
	reason  string // for the log
	counted bool   // a credential failure: counted against user and IP
}

// login checks credentials, plans the session and starts it. done means
// the connection is finished with the front door.
func (ss *session) login(tag, user, pass, mech string) (bool, error) {
	if ss.cleartextRefused() {
		return false, ss.refusePrivacy(tag)
	}
	ctx, cancel := context.WithTimeout(ss.ctx, 2*time.Minute)
	defer cancel()
	ip := ss.remote.Addr()
	routed, fail := ss.loginRoute(ctx, tag, user, pass, mech)
	if fail == nil {
		return routed, nil
	}
	userKey := strings.ToLower(user)
	ss.srv.metrics.Logins.WithLabelValues(strings.ToLower(fail.code)).Inc()
	// One stable line per failure, for fail2ban; never the password.
	ss.srv.log.Warn("login failed", "user", user, "remote", ss.remote.Addr().String(),
		"mechanism", mech, "reason", fail.reason)
	if fail.counted {
		ss.failures++
		ss.srv.throttle.Failure(userKey, ip)
		if !sleepCtx(ss.ctx, ss.srv.throttle.Delay(userKey, ip)) {
			return true, ss.ctx.Err()
		}
	}
	if err := ss.writef(tag, " NO [", fail.code, "] ", fail.text); err != nil {
		return true, err
	}
	if ss.failures >= ss.srv.cfg.Limits.MaxAuthFailures {
		ss.writef("* BYE Too many failed login attempts")
		return true, nil
	}
	return false, nil
}

// loginRoute authenticates and, on success, runs the routed session to its
// end (routed = true).
func (ss *session) loginRoute(ctx context.Context, tag, user, pass, mech string) (bool, *loginFailure) {
	srv := ss.srv
	id, err := srv.auth.Authenticate(ctx, auth.Credentials{
		Username: user, Password: pass, Remote: ss.remote.Addr(), Mechanism: mech, TLS: ss.isTLS,
	})
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials):
		return false, &loginFailure{code: "AUTHENTICATIONFAILED", text: "Authentication failed", reason: "bad credentials", counted: true}
	case err != nil:
		ss.log.Error("authentication error", "user", user, "err", err)
		return false, &loginFailure{code: "UNAVAILABLE", text: "Authentication is unavailable, try again later", reason: "auth error"}
	}
	plan, err := srv.router.Plan(id.User)
	if err != nil {
		if errors.Is(err, router.ErrNoRoute) && id.UpstreamVerifies {
			return false, &loginFailure{code: "AUTHENTICATIONFAILED", text: "Authentication failed", reason: "no route", counted: true}
		}
		ss.log.Error("no route for user", "user", id.User, "err", err)
		return false, &loginFailure{code: "UNAVAILABLE", text: "No server is configured for this account", reason: "no route"}
	}
	if plan.Mode != config.ModeRoute {
		ss.log.Error("unsupported mode", "user", id.User, "mode", plan.Mode)
		return false, &loginFailure{code: "UNAVAILABLE", text: "This account's mode is not available", reason: "unsupported mode"}
	}
	opts, ok := srv.upstreams[plan.Upstream]
	if !ok {
		ss.log.Error("unknown upstream in plan", "user", id.User, "upstream", plan.Upstream)
		return false, &loginFailure{code: "UNAVAILABLE", text: "No server is configured for this account", reason: "unknown upstream"}
	}
	secret, err := auth.ResolveSecret(plan.UpstreamPassword, pass)
	if err != nil {
		ss.log.Error("upstream credentials unavailable", "user", id.User, "upstream", plan.Upstream, "err", err)
		return false, &loginFailure{code: "UNAVAILABLE", text: "The account's server is unavailable", reason: "upstream secret"}
	}
	start := time.Now()
	uc, err := upstream.Dial(ctx, opts, upstream.ClientInfo{Remote: ss.remote, Local: ss.local})
	if err == nil {
		err = uc.Login(ctx, upstream.Credentials{Username: plan.UpstreamUser, Password: secret})
		if err != nil {
			uc.Close()
		}
	}
	if err != nil {
		kind := "unavailable"
		if errors.Is(err, upstream.ErrAuthFailed) {
			kind = "auth"
		}
		srv.metrics.UpstreamFailure.WithLabelValues(plan.Upstream, kind).Inc()
		if kind == "auth" && plan.UpstreamPassword.Kind == config.SecretPassthrough {
			return false, &loginFailure{code: "AUTHENTICATIONFAILED", text: "Authentication failed", reason: "rejected by upstream", counted: true}
		}
		ss.log.Error("upstream login failed", "user", id.User, "upstream", plan.Upstream, "err", err)
		return false, &loginFailure{code: "UNAVAILABLE", text: "The account's server is unavailable, try again later", reason: "upstream " + kind}
	}
	srv.metrics.UpstreamDial.WithLabelValues(plan.Upstream).Observe(time.Since(start).Seconds())
	srv.throttle.Success(strings.ToLower(id.User), ss.remote.Addr())
	srv.metrics.Logins.WithLabelValues("ok").Inc()
	ss.log = ss.log.With("user", id.User, "upstream", plan.Upstream)
	ss.log.Info("login", "method", id.Method, "mechanism", mech)
	ss.runRoute(tag, uc, plan.Upstream)
	return true, nil
}
