package router

import (
	"errors"
	"strings"
	"testing"

	"imapproxy/config"
)

// TestPlanFor checks plans made outside the configuration (router
// plugins' answers) with the configuration's rules.
func TestPlanFor(t *testing.T) {
	r := New(testConfig())
	p, err := r.PlanFor(config.User{Name: "zed@example.com", Upstream: "c", UpstreamUser: "zed"}, false)
	if err != nil || p.Mode != config.ModeRoute || p.Upstream != "c" || p.UpstreamUser != "zed" ||
		!p.UpstreamPassword.IsPassthrough() || p.Verify != config.VerifyUpstream {
		t.Fatalf("route: %+v, %v", p, err)
	}
	// Defaults as for a [[user]]: the user's own name upstream.
	if p, err := r.PlanFor(config.User{Name: "zed@example.com", Upstream: "c", UpstreamPassword: envSecret}, true); err != nil ||
		p.UpstreamUser != "zed@example.com" || p.UpstreamPassword != envSecret || p.Verify != config.VerifyProxy {
		t.Fatalf("verified with a stored secret: %+v, %v", p, err)
	}
	// Without an upstream the [[route]] rules choose one (the user name stays
	// the upstream login, as for a [[user]]).
	if p, err := r.PlanFor(config.User{Name: "x@sub.example.net"}, false); err != nil || p.Upstream != "a" || p.UpstreamUser != "x@sub.example.net" {
		t.Fatalf("from rules: %+v, %v", p, err)
	}
	m, err := r.PlanFor(config.User{Name: "m@example.com", Mode: config.ModeMerge, UnifiedInbox: true, DefaultAccount: "work",
		UnifiedSpecialUse: []string{"sent"},
		Accounts:          []config.Account{{Name: "work", Upstream: "a", Prefix: "Work"}, {Name: "home", Upstream: "b", Username: "m2", Prefix: "Home"}}}, false)
	if err != nil || m.Mode != config.ModeMerge || len(m.Merge.Accounts) != 2 || m.Merge.Accounts[0].Username != "m@example.com" ||
		m.Merge.Accounts[1].Username != "m2" || m.Merge.UnifiedSpecialUse[0] != `\Sent` || m.Merge.DefaultAccount != "work" {
		t.Fatalf("merge: %+v %+v, %v", m, m.Merge, err)
	}
	for _, tc := range []struct {
		u        config.User
		verified bool
		want     string
	}{
		{config.User{Name: "z", Upstream: "nope"}, true, `user.upstream: "nope" is not the name of an [[upstream]]`},
		{config.User{Name: "z", Upstream: "a", UpstreamPassword: envSecret}, false, "user.upstream_password: must be passthrough"},
		{config.User{Name: "z", Mode: "migrate", Upstream: "a"}, true, `user.mode: "migrate" is not one of route, merge`},
		{config.User{Name: "z", Mode: config.ModeMerge}, true, "needs at least one [[user.account]]"},
		{config.User{Name: "z", Mode: config.ModeMerge, Accounts: []config.Account{{Name: "w", Upstream: "a", Password: envSecret}}}, false,
			"user.account[0].password: must be passthrough"},
		{config.User{Name: "z", Mode: config.ModeMerge, UnifiedInbox: true, Accounts: []config.Account{{Name: "w", Upstream: "a"}}}, true,
			"user.default_account: required"},
	} {
		if _, err := r.PlanFor(tc.u, tc.verified); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %s", tc.u, err, tc.want)
		}
	}
	if _, err := r.PlanFor(config.User{Name: "two words", Upstream: "a"}, true); !errors.Is(err, ErrBadLogin) {
		t.Errorf("bad name: %v", err)
	}
}
