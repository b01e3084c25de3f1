package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"imapproxy/auth"
	"imapproxy/config"
	"imapproxy/router"
)

// pluginConfig is a [[plugin]] entry for an example plugin.
func pluginConfig(t testing.TB, name string, kind config.PluginKind, args ...string) config.Plugin {
	t.Helper()
	sum, err := SHA256(built[name])
	if err != nil {
		t.Fatal(err)
	}
	return config.Plugin{Name: name, Kind: kind, Command: built[name], Args: args, SHA256: sum,
		Timeout: config.Duration(2 * time.Second), OnError: config.PluginErrorDeny}
}

// startHost starts plugins and stops them at the end of the test,
// checking that none of their processes is left.
func startHost(t *testing.T, rt *router.Router, cfgs ...config.Plugin) *Host {
	t.Helper()
	h, err := Start(cfgs, Options{Router: rt, Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		h.Close()
		assertNoProcesses(t, h)
	})
	return h
}

// assertNoProcesses checks that every process the host ever started is
// gone, and that no child of the test process runs a plugin.
func assertNoProcesses(t *testing.T, h *Host) {
	t.Helper()
	for name, pids := range h.PIDs() {
		for _, pid := range pids {
			if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
				t.Errorf("plugin %s: process %d still exists after Close", name, pid)
			}
		}
	}
	if kids := pluginChildren(t); len(kids) > 0 {
		t.Errorf("plugin processes left: %v", kids)
	}
}

// pluginChildren lists the test process's children that run one of the
// built plugins (from /proc).
func pluginChildren(t *testing.T) []string {
	me := strconv.Itoa(os.Getpid())
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
		fields := strings.Fields(rest)
		if len(fields) < 2 || fields[1] != me {
			continue
		}
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		for _, path := range built {
			if strings.HasPrefix(exe, path) {
				out = append(out, e.Name()+" "+exe)
			}
		}
	}
	return out
}

func writeJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "data.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUserfilePlugin(t *testing.T) {
	users := writeJSON(t, map[string]any{"users": []map[string]any{
		{"name": "alice@example.com", "logins": []string{"alice"}, "password_hash": cheapArgon2id("alicepw"),
			"attributes": map[string]string{"require_2fa": "true"}},
	}})
	h := startHost(t, nil, pluginConfig(t, "userfile", config.PluginAuthenticator, "-users", users))
	v := h.Verifiers()[0]
	ctx := context.Background()
	got, err := v.Verify(ctx, auth.Credentials{Username: "ALICE", Password: "alicepw"})
	if err != nil || got.Decision != auth.Allow || got.User != "alice@example.com" || got.Attributes["require_2fa"] != "true" {
		t.Fatalf("allow: %+v, %v", got, err)
	}
	if got, err := v.Verify(ctx, auth.Credentials{Username: "alice", Password: "nope"}); err != nil || got.Decision != auth.Deny {
		t.Fatalf("deny: %+v, %v", got, err)
	}
	if got, err := v.Verify(ctx, auth.Credentials{Username: "bob", Password: "x"}); err != nil || got.Decision != auth.Continue {
		t.Fatalf("continue: %+v, %v", got, err)
	}
	if h.Planner() != nil {
		t.Error("a planner without router plugins")
	}
}

func TestDomainRouterPlugin(t *testing.T) {
	rules := writeJSON(t, map[string]any{
		"domains": map[string]any{"example.com": map[string]string{"upstream": "work", "username": "{local}"}},
		"merge": map[string]any{"carol@example.com": map[string]any{
			"accounts": []map[string]string{
				{"name": "work", "upstream": "work", "username": "{local}", "prefix": "Work"},
				{"name": "home", "upstream": "home", "username": "carol@example.org", "prefix": "Home"}},
			"unified_inbox": true, "default_account": "work"}},
	})
	rt := router.New(&config.Config{Upstreams: []config.Upstream{{Name: "work"}, {Name: "home"}}})
	h := startHost(t, rt, pluginConfig(t, "domainrouter", config.PluginRouter, "-config", rules))
	pl := h.Planner()
	ctx := context.Background()
	plan, ok, err := pl.PlanFor(ctx, router.PlanRequest{User: "dave@example.com"})
	if err != nil || !ok || plan.Upstream != "work" || plan.UpstreamUser != "dave" || plan.Verify != config.VerifyUpstream {
		t.Fatalf("by domain: %+v %v %v", plan, ok, err)
	}
	plan, ok, err = pl.PlanFor(ctx, router.PlanRequest{User: "carol@example.com", Verified: true})
	if err != nil || !ok || plan.Mode != config.ModeMerge || !plan.Merge.UnifiedInbox || plan.Merge.Accounts[0].Username != "carol" ||
		plan.Merge.Accounts[1].Username != "carol@example.org" {
		t.Fatalf("merge: %+v %v %v", plan, ok, err)
	}
	if _, ok, err := pl.PlanFor(ctx, router.PlanRequest{User: "x@elsewhere.org"}); ok || err != nil {
		t.Fatalf("default: %v %v", ok, err)
	}
}

func TestChecksumMismatchRefusesStart(t *testing.T) {
	c := pluginConfig(t, "userfile", config.PluginAuthenticator, "-users", "/nonexistent")
	c.SHA256 = strings.Repeat("0", 64)
	h, err := Start([]config.Plugin{c}, Options{Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		h.Close()
		t.Fatal("started a plugin whose checksum does not match")
	}
	if !strings.Contains(err.Error(), `plugin "userfile"`) || !strings.Contains(err.Error(), "does not match its sha256") {
		t.Errorf("error: %v", err)
	}
	if kids := pluginChildren(t); len(kids) > 0 {
		t.Errorf("processes: %v", kids)
	}
	// A plugin of the wrong protocol (not a plugin at all) fails too.
	sh := "/bin/true"
	sum, _ := SHA256(sh)
	if _, err := Start([]config.Plugin{{Name: "true", Kind: config.PluginAuthenticator, Command: sh, SHA256: sum,
		Timeout: config.Duration(time.Second)}}, Options{Logger: slog.New(slog.DiscardHandler)}); err == nil {
		t.Error("/bin/true started as a plugin")
	}
}

// authEndpoint is an auth_http endpoint whose answers the test holds:
// every request waits on release (when set) and answers OK for alice.
type authEndpoint struct {
	srv     *httptest.Server
	entered chan struct{}

	mu      sync.Mutex
	release chan struct{}
}

func newAuthEndpoint(t *testing.T) *authEndpoint {
	e := &authEndpoint{entered: make(chan struct{}, 16)}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.entered <- struct{}{}
		e.mu.Lock()
		release := e.release
		e.mu.Unlock()
		if release != nil {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		if r.Header.Get("Auth-User") == "alice" && r.Header.Get("Auth-Pass") == "alicepw" {
			w.Header().Set("Auth-Status", "OK")
			w.Header().Set("Auth-User", "alice%40example.com")
		} else {
			w.Header().Set("Auth-Status", "Invalid login or password")
		}
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *authEndpoint) hold() chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.release = make(chan struct{})
	return e.release
}

func (e *authEndpoint) unhold() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.release != nil {
		close(e.release)
		e.release = nil
	}
}

// TestKilledMidLoginFailsClosedAndRestarts kills the plugin while it
// waits for its HTTP endpoint: that login fails, the plugin is started
// again, and later logins work.
func TestKilledMidLoginFailsClosedAndRestarts(t *testing.T) {
	e := newAuthEndpoint(t)
	h := startHost(t, nil, pluginConfig(t, "httpauth", config.PluginAuthenticator, "-url", e.srv.URL))
	v := h.Verifiers()[0]
	ctx := context.Background()
	alice := auth.Credentials{Username: "alice", Password: "alicepw"}
	if got, err := v.Verify(ctx, alice); err != nil || got.Decision != auth.Allow || got.User != "alice@example.com" {
		t.Fatalf("before: %+v, %v", got, err)
	}
	<-e.entered
	e.hold()
	defer e.unhold()
	done := make(chan error, 1)
	go func() {
		_, err := v.Verify(ctx, alice)
		done <- err
	}()
	<-e.entered
	pids := h.PIDs()["httpauth"]
	if err := syscall.Kill(pids[len(pids)-1], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the login of a killed plugin did not fail")
		}
		t.Logf("login during the crash: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the login of a killed plugin hangs")
	}
	e.unhold()
	deadline := time.Now().Add(10 * time.Second)
	for len(h.PIDs()["httpauth"]) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the plugin was not restarted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var got auth.Verdict
	var err error
	for time.Now().Before(deadline) {
		if got, err = v.Verify(ctx, alice); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || got.Decision != auth.Allow {
		t.Fatalf("after the restart: %+v, %v", got, err)
	}
	p := h.procs[0]
	if n := testutil.ToFloat64(p.metrics.Restarts.WithLabelValues("httpauth")); n != 1 {
		t.Errorf("restarts = %v", n)
	}
	if testutil.ToFloat64(p.metrics.Calls.WithLabelValues("httpauth", "unavailable")) < 1 {
		t.Error("the failed call was not counted")
	}
}

// TestHangPastTimeout: a plugin that does not answer within its timeout
// fails the login (or, with on_error = "next", hands it on).
func TestHangPastTimeout(t *testing.T) {
	e := newAuthEndpoint(t)
	deny := pluginConfig(t, "httpauth", config.PluginAuthenticator, "-url", e.srv.URL)
	deny.Timeout = config.Duration(300 * time.Millisecond)
	next := deny
	next.Name, next.OnError = "httpauth-next", config.PluginErrorNext
	h := startHost(t, nil, deny, next)
	e.hold()
	defer e.unhold()
	alice := auth.Credentials{Username: "alice", Password: "alicepw"}
	start := time.Now()
	_, err := h.Verifiers()[0].Verify(context.Background(), alice)
	if err == nil || !strings.Contains(err.Error(), "no answer within 300ms") {
		t.Fatalf("deny: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s", d)
	}
	got, err := h.Verifiers()[1].Verify(context.Background(), alice)
	if err != nil || got.Decision != auth.Continue {
		t.Fatalf("next: %+v, %v", got, err)
	}
	if n := testutil.ToFloat64(h.procs[0].metrics.Calls.WithLabelValues("httpauth", "timeout")); n != 1 {
		t.Errorf("timeouts = %v", n)
	}
	// The plugin itself is fine: once the endpoint answers, so does it.
	e.unhold()
	if got, err := h.Verifiers()[0].Verify(context.Background(), alice); err != nil || got.Decision != auth.Allow {
		t.Fatalf("after: %+v, %v", got, err)
	}
}

// TestCloseLeavesNoProcesses stops a host with three plugins, one of them
// busy, and checks /proc.
func TestCloseLeavesNoProcesses(t *testing.T) {
	e := newAuthEndpoint(t)
	users := writeJSON(t, map[string]any{"users": []any{}})
	rules := writeJSON(t, map[string]any{"domains": map[string]any{}})
	rt := router.New(&config.Config{})
	h, err := Start([]config.Plugin{
		pluginConfig(t, "userfile", config.PluginAuthenticator, "-users", users),
		pluginConfig(t, "domainrouter", config.PluginRouter, "-config", rules),
		pluginConfig(t, "httpauth", config.PluginAuthenticator, "-url", e.srv.URL),
	}, Options{Router: rt, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if kids := pluginChildren(t); len(kids) != 3 {
		t.Errorf("running: %v", kids)
	}
	e.hold()
	done := make(chan error, 1)
	go func() {
		_, err := h.Verifiers()[1].Verify(context.Background(), auth.Credentials{Username: "alice", Password: "alicepw"})
		done <- err
	}()
	<-e.entered
	h.Close()
	e.unhold()
	if err := <-done; err == nil {
		t.Error("a call cut by Close succeeded")
	}
	assertNoProcesses(t, h)
	if _, err := h.Verifiers()[0].Verify(context.Background(), auth.Credentials{Username: "a", Password: "b"}); !errors.Is(err, errNotRunning) {
		t.Errorf("after Close: %v", err)
	}
}

// BenchmarkPluginCall is one authenticator call to the real userfile
// plugin (a cheap argon2id hash): the plugin's share of a login.
func BenchmarkPluginCall(b *testing.B) {
	users := filepath.Join(b.TempDir(), "users.json")
	data, _ := json.Marshal(map[string]any{"users": []map[string]any{{"name": "alice", "password_hash": cheapArgon2id("alicepw")}}})
	os.WriteFile(users, data, 0o600)
	c := pluginConfig(b, "userfile", config.PluginAuthenticator, "-users", users)
	h, err := Start([]config.Plugin{c}, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	v := h.Verifiers()[0]
	cr := auth.Credentials{Username: "alice", Password: "alicepw"}
	b.ResetTimer()
	for b.Loop() {
		if got, err := v.Verify(context.Background(), cr); err != nil || got.Decision != auth.Allow {
			b.Fatal(got, err)
		}
	}
}
