package plugins

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"google.golang.org/grpc"

	"imapproxy/config"
	pluginpb "imapproxy/plugins/proto"
	"imapproxy/router"
)

// planner is a router plugin as a router.Planner.
type planner struct {
	p     *process
	rt    *router.Router
	cache *cache
}

// planAnswer is a cached answer: a plan, no decision, or a refusal.
type planAnswer struct {
	plan    router.Plan
	decided bool
	refused error
	result  string
}

// PlanFor asks the plugin for req's plan and checks the answer with
// router.PlanFor, as the configuration's [[user]] entries are checked.
func (pl *planner) PlanFor(ctx context.Context, req router.PlanRequest) (router.Plan, bool, error) {
	name := pl.p.cfg.Name
	var key string
	if pl.cache != nil {
		key = pl.cache.keyOf(append([]string{req.User, req.Login, req.Method, strconv.FormatBool(req.Verified), req.Listener},
			sortedAttrs(req.Attributes)...)...)
		if v, ok := pl.cache.get(key); ok {
			a := v.(planAnswer)
			pl.p.metrics.Calls.WithLabelValues(name, "cached_"+a.result).Inc()
			return a.plan, a.decided, a.refused
		}
	}
	preq := &pluginpb.RouteRequest{User: req.User, Login: req.Login, Attributes: req.Attributes, Method: req.Method,
		Verified: req.Verified, Listener: req.Listener}
	if req.Remote.IsValid() {
		preq.ClientIp = req.Remote.String()
	}
	var resp *pluginpb.RouteResponse
	err := pl.p.invoke(ctx, func(ctx context.Context, conn *grpc.ClientConn) error {
		var err error
		resp, err = pluginpb.NewRouterClient(conn).Route(ctx, preq)
		return err
	})
	var a planAnswer
	if err == nil {
		a, err = pl.answer(req, resp)
	}
	if err != nil {
		if err := pl.p.failed(err, req.User, preq.ClientIp); err != nil {
			return router.Plan{}, false, err
		}
		return router.Plan{}, false, nil
	}
	pl.p.metrics.Calls.WithLabelValues(name, a.result).Inc()
	pl.cache.put(key, a)
	return a.plan, a.decided, a.refused
}

// answer checks the plugin's answer.
func (pl *planner) answer(req router.PlanRequest, r *pluginpb.RouteResponse) (planAnswer, error) {
	u := config.User{Name: req.User}
	switch r.GetMode() {
	case pluginpb.Mode_MODE_DEFAULT:
		return planAnswer{result: "default"}, nil
	case pluginpb.Mode_MODE_REJECT:
		reason := r.GetReason()
		if reason == "" {
			reason = "refused by plugin " + pl.p.cfg.Name
		}
		return planAnswer{decided: true, result: "reject",
			refused: fmt.Errorf("%w: %s", router.ErrNoRoute, truncate(reason, maxReasonBytes))}, nil
	case pluginpb.Mode_MODE_ROUTE:
		if len(r.GetAccounts()) > 0 {
			return planAnswer{}, malformed("accounts in route mode")
		}
		u.Mode, u.Upstream, u.UpstreamUser = config.ModeRoute, r.GetUpstream(), r.GetUpstreamUser()
		if u.Upstream == "" {
			return planAnswer{}, malformed("route mode without an upstream")
		}
		var err error
		if u.UpstreamPassword, err = secret(r.GetUpstreamPassword()); err != nil {
			return planAnswer{}, malformed("upstream_password: %v", err)
		}
	case pluginpb.Mode_MODE_MERGE:
		if r.GetUpstream() != "" || r.GetUpstreamUser() != "" || r.GetUpstreamPassword() != "" {
			return planAnswer{}, malformed("upstream fields in merge mode (each account has its own)")
		}
		u.Mode, u.UnifiedInbox, u.DefaultAccount = config.ModeMerge, r.GetUnifiedInbox(), r.GetDefaultAccount()
		u.UnifiedSpecialUse = r.GetUnifiedSpecialUse()
		for i, a := range r.GetAccounts() {
			pw, err := secret(a.GetPassword())
			if err != nil {
				return planAnswer{}, malformed("accounts[%d].password: %v", i, err)
			}
			u.Accounts = append(u.Accounts, config.Account{Name: a.GetName(), Upstream: a.GetUpstream(),
				Username: a.GetUsername(), Password: pw, Prefix: a.GetPrefix()})
		}
	default:
		return planAnswer{}, malformed("mode %v", r.GetMode())
	}
	plan, err := pl.rt.PlanFor(u, req.Verified)
	if err != nil {
		return planAnswer{}, malformed("%v", err)
	}
	return planAnswer{plan: plan, decided: true, result: string(plan.Mode)}, nil
}

// secret parses a password reference; empty is passthrough.
func secret(s string) (config.Secret, error) {
	if s == "" {
		return config.Secret{Kind: config.SecretPassthrough}, nil
	}
	return config.ParseSecret(s)
}

func sortedAttrs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// planners asks router plugins in order; the first that decides wins.
type planners []*planner

// PlanFor implements router.Planner.
func (ps planners) PlanFor(ctx context.Context, req router.PlanRequest) (router.Plan, bool, error) {
	for _, p := range ps {
		plan, ok, err := p.PlanFor(ctx, req)
		if ok || err != nil {
			return plan, ok, err
		}
	}
	return router.Plan{}, false, nil
}
