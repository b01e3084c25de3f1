package plugins

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"

	"imapproxy/auth"
	"imapproxy/config"
	pluginpb "imapproxy/plugins/proto"
	"imapproxy/plugins/sdk"
	"imapproxy/router"
)

// scripted answers every call with the answer the test sets: the
// in-process side of go-plugin's gRPC test connection.
type scripted struct {
	pluginpb.UnimplementedAuthenticatorServer
	pluginpb.UnimplementedRouterServer
	auth  *pluginpb.AuthenticateResponse
	route *pluginpb.RouteResponse
	err   error
	delay time.Duration

	mu     sync.Mutex // calls that timed out may still run next to new ones
	gotReq *pluginpb.AuthenticateRequest
}

// lastReq returns the last request Authenticate got.
func (s *scripted) lastReq() *pluginpb.AuthenticateRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gotReq
}

func (s *scripted) Authenticate(ctx context.Context, r *pluginpb.AuthenticateRequest) (*pluginpb.AuthenticateResponse, error) {
	s.mu.Lock()
	s.gotReq = r
	s.mu.Unlock()
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.auth, s.err
}

func (s *scripted) Route(context.Context, *pluginpb.RouteRequest) (*pluginpb.RouteResponse, error) {
	return s.route, s.err
}

// inProcess connects a process to s with go-plugin's in-process gRPC
// helpers: everything but the child process.
func inProcess(t *testing.T, kind config.PluginKind, s *scripted, onError config.PluginOnError) *process {
	t.Helper()
	client, server := plugin.TestPluginGRPCConn(t, false, sdk.Services(s, s))
	t.Cleanup(func() {
		// The server first: a client's Close would otherwise stop it from
		// a handler while Stop runs here (a race in go-plugin).
		server.Stop()
		client.Close()
	})
	raw, err := client.Dispense(kindName(kind))
	if err != nil {
		t.Fatal(err)
	}
	return &process{
		cfg:     config.Plugin{Name: "test", Kind: kind, Timeout: config.Duration(200 * time.Millisecond), OnError: onError},
		log:     slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		metrics: NewMetrics(nil),
		conn:    raw.(*grpc.ClientConn),
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestAuthenticatorAnswers(t *testing.T) {
	s := &scripted{}
	p := inProcess(t, config.PluginAuthenticator, s, config.PluginErrorDeny)
	a := &authenticator{p: p}
	ctx := context.Background()
	cr := auth.Credentials{Username: "alice", Password: "pw", Mechanism: "login", TLS: true, RemotePort: 5555, Listener: "0.0.0.0:993"}

	s.auth = &pluginpb.AuthenticateResponse{Decision: pluginpb.Decision_DECISION_ALLOW, User: "alice@example.com",
		Attributes: map[string]string{"require_2fa": "true"}}
	v, err := a.Verify(ctx, cr)
	if err != nil || v.Decision != auth.Allow || v.User != "alice@example.com" || v.Attributes[auth.AttrRequire2FA] != "true" || v.Source != "test" {
		t.Fatalf("allow: %+v, %v", v, err)
	}
	if r := s.lastReq(); r.GetLogin() != "alice" || r.GetCredential() != "pw" || r.GetKind() != pluginpb.CredentialKind_CREDENTIAL_KIND_PASSWORD ||
		!r.GetTls() || r.GetClientPort() != 5555 || r.GetListener() != "0.0.0.0:993" || r.GetMechanism() != "login" {
		t.Errorf("request: %v", r)
	}
	s.auth = &pluginpb.AuthenticateResponse{Decision: pluginpb.Decision_DECISION_DENY, Reason: "no"}
	if v, err := a.Verify(ctx, cr); err != nil || v.Decision != auth.Deny || v.Reason != "no" {
		t.Fatalf("deny: %+v, %v", v, err)
	}
	// Malformed answers, a plugin error and a timeout fail closed.
	for name, resp := range map[string]*pluginpb.AuthenticateResponse{
		"no decision": {},
		"bad user":    {Decision: pluginpb.Decision_DECISION_ALLOW, User: "two words"},
		"huge attrs":  {Decision: pluginpb.Decision_DECISION_ALLOW, Attributes: map[string]string{"k": strings.Repeat("v", 2000)}},
	} {
		s.auth = resp
		if _, err := a.Verify(ctx, cr); err == nil || !strings.Contains(err.Error(), "malformed answer") {
			t.Errorf("%s: %v", name, err)
		}
	}
	s.auth, s.err = nil, errors.New("directory down")
	if _, err := a.Verify(ctx, cr); err == nil || !strings.Contains(err.Error(), "directory down") {
		t.Errorf("plugin error: %v", err)
	}
	s.err, s.delay = nil, time.Second
	start := time.Now()
	if _, err := a.Verify(ctx, cr); err == nil || !strings.Contains(err.Error(), "no answer within 200ms") || time.Since(start) > 900*time.Millisecond {
		t.Errorf("timeout: %v after %s", err, time.Since(start))
	}
	// on_error = "next": the same failure hands the decision on.
	p.cfg.OnError = config.PluginErrorNext
	if v, err := a.Verify(ctx, cr); err != nil || v.Decision != auth.Continue {
		t.Errorf("on_error next: %+v, %v", v, err)
	}
	for result, want := range map[string]float64{"allow": 1, "deny": 1, "malformed": 3, "error": 1, "timeout": 2} {
		if got := testutil.ToFloat64(p.metrics.Calls.WithLabelValues("test", result)); got != want {
			t.Errorf("calls{result=%q} = %v, want %v", result, got, want)
		}
	}
}

func TestAuthenticatorCache(t *testing.T) {
	s := &scripted{auth: &pluginpb.AuthenticateResponse{Decision: pluginpb.Decision_DECISION_ALLOW}}
	p := inProcess(t, config.PluginAuthenticator, s, config.PluginErrorDeny)
	a := &authenticator{p: p, cache: newCache(time.Minute)}
	now := time.Now()
	a.cache.now = func() time.Time { return now }
	cr := auth.Credentials{Username: "alice", Password: "pw"}
	for range 3 {
		if v, err := a.Verify(context.Background(), cr); err != nil || v.Decision != auth.Allow {
			t.Fatal(v, err)
		}
	}
	if got := testutil.ToFloat64(p.metrics.Calls.WithLabelValues("test", "allow")); got != 1 {
		t.Errorf("plugin asked %v times", got)
	}
	cr.Password = "other"
	s.auth = &pluginpb.AuthenticateResponse{Decision: pluginpb.Decision_DECISION_DENY}
	if v, _ := a.Verify(context.Background(), cr); v.Decision != auth.Deny {
		t.Errorf("another password was answered from the cache: %+v", v)
	}
	now = now.Add(2 * time.Minute)
	cr.Password = "pw"
	if v, _ := a.Verify(context.Background(), cr); v.Decision != auth.Deny {
		t.Errorf("expired entry used: %+v", v)
	}
}

func TestPlannerAnswers(t *testing.T) {
	s := &scripted{}
	p := inProcess(t, config.PluginRouter, s, config.PluginErrorDeny)
	rt := router.New(&config.Config{Upstreams: []config.Upstream{{Name: "work"}, {Name: "home"}}})
	pl := &planner{p: p, rt: rt}
	ctx := context.Background()
	req := router.PlanRequest{User: "carol@example.com", Login: "carol", Verified: true}

	s.route = &pluginpb.RouteResponse{Mode: pluginpb.Mode_MODE_ROUTE, Upstream: "work", UpstreamUser: "carol", UpstreamPassword: "env:PW"}
	plan, ok, err := pl.PlanFor(ctx, req)
	if err != nil || !ok || plan.Mode != config.ModeRoute || plan.Upstream != "work" || plan.UpstreamUser != "carol" ||
		plan.UpstreamPassword.Kind != config.SecretEnv || plan.Verify != config.VerifyProxy {
		t.Fatalf("route: %+v %v %v", plan, ok, err)
	}
	s.route = &pluginpb.RouteResponse{Mode: pluginpb.Mode_MODE_MERGE, Accounts: []*pluginpb.Account{
		{Name: "work", Upstream: "work", Prefix: "Work"}, {Name: "home", Upstream: "home", Prefix: "Home", Username: "c2"}}}
	plan, ok, err = pl.PlanFor(ctx, req)
	if err != nil || !ok || plan.Mode != config.ModeMerge || len(plan.Merge.Accounts) != 2 || plan.Merge.Accounts[1].Username != "c2" {
		t.Fatalf("merge: %+v %v %v", plan, ok, err)
	}
	s.route = &pluginpb.RouteResponse{Mode: pluginpb.Mode_MODE_DEFAULT}
	if _, ok, err := pl.PlanFor(ctx, req); ok || err != nil {
		t.Fatalf("default: %v %v", ok, err)
	}
	s.route = &pluginpb.RouteResponse{Mode: pluginpb.Mode_MODE_REJECT, Reason: "moved away"}
	if _, ok, err := pl.PlanFor(ctx, req); !ok || !errors.Is(err, router.ErrNoRoute) || !strings.Contains(err.Error(), "moved away") {
		t.Fatalf("reject: %v %v", ok, err)
	}
	for name, resp := range map[string]*pluginpb.RouteResponse{
		"no mode":           {},
		"unknown upstream":  {Mode: pluginpb.Mode_MODE_ROUTE, Upstream: "nope"},
		"no upstream":       {Mode: pluginpb.Mode_MODE_ROUTE},
		"a password":        {Mode: pluginpb.Mode_MODE_ROUTE, Upstream: "work", UpstreamPassword: "hunter2"},
		"merge no accounts": {Mode: pluginpb.Mode_MODE_MERGE},
	} {
		s.route = resp
		if _, _, err := pl.PlanFor(ctx, req); err == nil || !strings.Contains(err.Error(), "malformed answer") {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Not verified by the proxy: only the client's own password may go
	// upstream.
	s.route = &pluginpb.RouteResponse{Mode: pluginpb.Mode_MODE_ROUTE, Upstream: "work", UpstreamPassword: "store"}
	req.Verified = false
	if _, _, err := pl.PlanFor(ctx, req); err == nil || !strings.Contains(err.Error(), "must be passthrough") {
		t.Errorf("stored secret for an unverified user: %v", err)
	}
	s.route = &pluginpb.RouteResponse{Mode: pluginpb.Mode_MODE_ROUTE, Upstream: "work", UpstreamPassword: "hunter2"}
	if _, _, err := pl.PlanFor(ctx, req); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a password in the answer is echoed: %v", err)
	}
}
