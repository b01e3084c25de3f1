package main

// Logins through a served proxy whose authentication and routing are
// decided by the example plugins (built by TestMain), against
// imapmemserver upstreams and a real Dovecot.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
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

	"imapproxy/auth"
	"imapproxy/config"
	"imapproxy/internal/dovecot"
	"imapproxy/plugins"
)

// pluginTOML is a [[plugin]] entry for an example plugin.
func pluginTOML(t *testing.T, name, kind string, extra string, args ...string) string {
	t.Helper()
	sum, err := plugins.SHA256(builtPlugins[name])
	if err != nil {
		t.Fatal(err)
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = strconv.Quote(a)
	}
	return fmt.Sprintf("[[plugin]]\nname = %q\nkind = %q\ncommand = %q\nargs = [%s]\nsha256 = %q\n%s\n",
		name, kind, builtPlugins[name], strings.Join(quoted, ", "), sum, extra)
}

// writeJSONFile writes v as JSON into dir/name.
func writeJSONFile(t *testing.T, dir, name string, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// pluginPassword is the password of the plugins' users, which the proxy
// must never log; the upstreams get the demo password (env:DEMO_UPSTREAM_PW).
const pluginPassword = "plugin-pw-7f3a"

var (
	demoHashOnce sync.Once
	demoHash     string
)

// passwordHash is the argon2id hash of pluginPassword, made once.
func passwordHash(t *testing.T) string {
	demoHashOnce.Do(func() {
		h, err := auth.HashPassword(pluginPassword)
		if err != nil {
			t.Fatal(err)
		}
		demoHash = h
	})
	return demoHash
}

// logBuffer collects an instance's log for checks, and passes it to t.Logf.
type logBuffer struct {
	t  *testing.T
	mu sync.Mutex
	sb strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.sb.Write(p)
	l.mu.Unlock()
	l.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.String()
}

// servePlugins starts an instance from a config body (listener, state
// directory and admin added here) and stops it at the end of the test,
// checking that no plugin process is left.
func servePlugins(t *testing.T, body string) (*instance, *logBuffer) {
	t.Helper()
	dir := t.TempDir()
	text := fmt.Sprintf("state_dir = %q\n[[listen]]\naddress = \"127.0.0.1:0\"\ntls = \"none\"\nallow_cleartext_auth = true\n"+
		"[admin]\naddress = \"127.0.0.1:0\"\n[limits]\nauth_delay = \"1ms\"\nmax_auth_delay = \"2ms\"\nmax_auth_failures = 10\n%s", dir, body)
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{t: t}
	in, err := startInstance(cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pids := in.plugins.PIDs()
		in.shutdown(ctx)
		for name, list := range pids {
			for _, pid := range list {
				if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
					t.Errorf("plugin %s: process %d left after shutdown", name, pid)
				}
			}
		}
		if strings.Contains(logs.String(), pluginPassword) || strings.Contains(logs.String(), "alicepw") || strings.Contains(logs.String(), "bobpw") {
			t.Errorf("a password is in the log")
		}
	})
	return in, logs
}

// imapConn is a raw IMAP connection to the proxy.
type imapConn struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dialIMAP(t *testing.T, in *instance) *imapConn {
	t.Helper()
	c, err := net.Dial("tcp", in.proxy.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	ic := &imapConn{t: t, conn: c, br: bufio.NewReader(c)}
	if l := ic.line(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting: %q", l)
	}
	return ic
}

func (c *imapConn) line() string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// cmd sends a command and returns the untagged lines and the tagged one.
func (c *imapConn) cmd(tag, command string) ([]string, string) {
	c.t.Helper()
	fmt.Fprintf(c.conn, "%s %s\r\n", tag, command)
	var untagged []string
	for {
		l := c.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, l
		}
		untagged = append(untagged, l)
	}
}

// login logs in and returns the tagged answer.
func login(t *testing.T, in *instance, user, pw string) (*imapConn, string) {
	t.Helper()
	c := dialIMAP(t, in)
	_, l := c.cmd("a", fmt.Sprintf("LOGIN %q %q", user, pw))
	return c, l
}

func metricsText(t *testing.T, in *instance) string {
	t.Helper()
	resp, err := http.Get("http://" + in.adminAddr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestServeWithPlugins: the userfile plugin authenticates and the
// domainrouter plugin routes a user to an imapmemserver by domain and a
// listed user to merge mode over two of them.
func TestServeWithPlugins(t *testing.T) {
	work, err := startDemoAccountUpstream(demoAccounts[0].name)
	if err != nil {
		t.Fatal(err)
	}
	defer work.Close()
	home, err := startDemoAccountUpstream(demoAccounts[1].name)
	if err != nil {
		t.Fatal(err)
	}
	defer home.Close()
	dir := t.TempDir()
	users := writeJSONFile(t, dir, "users.json", map[string]any{"users": []map[string]any{
		{"name": "demo@example.com", "logins": []string{"demo"}, "password_hash": passwordHash(t)},
		{"name": "merged@example.org", "password_hash": passwordHash(t)},
	}})
	rules := writeJSONFile(t, dir, "rules.json", map[string]any{
		"domains": map[string]any{"example.com": map[string]string{"upstream": "work", "username": "{local}", "password": "env:DEMO_UPSTREAM_PW"}},
		"merge": map[string]any{"merged@example.org": map[string]any{
			"accounts": []map[string]string{
				{"name": "work", "upstream": "work", "username": "demo", "password": "env:DEMO_UPSTREAM_PW", "prefix": "Work"},
				{"name": "home", "upstream": "home", "username": "demo", "password": "env:DEMO_UPSTREAM_PW", "prefix": "Home"}},
		}},
	})
	t.Setenv("DEMO_UPSTREAM_PW", demoPassword)
	in, logs := servePlugins(t, fmt.Sprintf(`
[[upstream]]
name = "work"
address = %q
tls = "none"
[[upstream]]
name = "home"
address = %q
tls = "none"
%s
%s`, work.Addr().String(), home.Addr().String(),
		pluginTOML(t, "userfile", "authenticator", "", "-users", users),
		pluginTOML(t, "domainrouter", "router", `cache_ttl = "1m"`, "-config", rules)))

	c, l := login(t, in, "demo", pluginPassword)
	if !strings.HasPrefix(l, "a OK") {
		t.Fatalf("routed login: %q", l)
	}
	if _, l := c.cmd("b", "SELECT INBOX"); !strings.HasPrefix(l, "b OK") {
		t.Fatalf("SELECT: %q", l)
	}
	if _, l := login(t, in, "demo", "wrong-password"); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("wrong password: %q", l)
	}
	// Unknown to the plugin, and no built-in user or route: refused.
	if _, l := login(t, in, "stranger", "whatever"); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("unknown user: %q", l)
	}
	m, l := login(t, in, "merged@example.org", pluginPassword)
	if !strings.HasPrefix(l, "a OK") {
		t.Fatalf("merged login: %q", l)
	}
	lines, l := m.cmd("b", `LIST "" "*"`)
	list := strings.Join(lines, "\n")
	if !strings.HasPrefix(l, "b OK") || !strings.Contains(list, `"Work/INBOX"`) || !strings.Contains(list, `"Home/INBOX"`) {
		t.Fatalf("merged LIST: %s\n%s", l, list)
	}
	if !strings.Contains(logs.String(), `user=demo@example.com upstream=work method=plugin mechanism=login plugin=userfile`) {
		t.Errorf("no login line with the plugin's user")
	}
	metrics := metricsText(t, in)
	for _, want := range []string{`imapproxy_plugin_calls_total{plugin="userfile",result="allow"} 2`,
		`imapproxy_plugin_calls_total{plugin="userfile",result="deny"} 1`,
		`imapproxy_plugin_calls_total{plugin="domainrouter",result="route"} 1`,
		`imapproxy_plugin_calls_total{plugin="domainrouter",result="merge"} 1`,
		`imapproxy_plugin_up{plugin="userfile"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// authHTTP is an auth_http endpoint (for the httpauth plugin) that knows
// one user and password; hold makes it wait.
type authHTTP struct {
	srv     *httptest.Server
	entered chan struct{}
	mu      sync.Mutex
	release chan struct{}
}

func newAuthHTTP(t *testing.T, user, pw string) *authHTTP {
	a := &authHTTP{entered: make(chan struct{}, 64)}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case a.entered <- struct{}{}:
		default:
		}
		a.mu.Lock()
		release := a.release
		a.mu.Unlock()
		if release != nil {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		if r.Header.Get("Auth-User") == user && r.Header.Get("Auth-Pass") == pw && r.Header.Get("Auth-Protocol") == "imap" {
			w.Header().Set("Auth-Status", "OK")
		} else {
			w.Header().Set("Auth-Status", "Invalid login or password")
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *authHTTP) hold() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.release = make(chan struct{})
	for len(a.entered) > 0 {
		<-a.entered
	}
}

func (a *authHTTP) unhold() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.release != nil {
		close(a.release)
		a.release = nil
	}
}

// serveRoutedPlugins serves the given [[plugin]] entries with every
// login routed to an imapmemserver as demo (verify = "proxy": the
// plugins decide who gets in).
func serveRoutedPlugins(t *testing.T, plugins ...string) (*instance, *logBuffer) {
	t.Helper()
	up, err := startDemoUpstream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() }) // after the instance's shutdown
	t.Setenv("DEMO_UPSTREAM_PW", demoPassword)
	return servePlugins(t, fmt.Sprintf(`
[[upstream]]
name = "mem"
address = %q
tls = "none"
[[route]]
match = "*"
upstream = "mem"
username = "demo"
password = "env:DEMO_UPSTREAM_PW"
verify = "proxy"
%s`, up.Addr().String(), strings.Join(plugins, "\n")))
}

// TestPluginFailuresFailClosed: with the httpauth plugin killed during a
// login, or its endpoint slower than the plugin's timeout, the login gets
// NO [UNAVAILABLE] while other users (of the userfile plugin, asked
// first) keep logging in; the killed plugin is restarted.
func TestPluginFailuresFailClosed(t *testing.T) {
	dir := t.TempDir()
	users := writeJSONFile(t, dir, "users.json", map[string]any{"users": []map[string]any{
		{"name": "other", "password_hash": passwordHash(t)},
	}})
	a := newAuthHTTP(t, "demo", pluginPassword)
	in, logs := serveRoutedPlugins(t,
		pluginTOML(t, "userfile", "authenticator", "", "-users", users),
		pluginTOML(t, "httpauth", "authenticator", `timeout = "500ms"`, "-url", a.srv.URL))

	if _, l := login(t, in, "demo", pluginPassword); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("before: %q", l)
	}
	// Killed mid-login.
	a.hold()
	c := dialIMAP(t, in)
	fmt.Fprintf(c.conn, "a LOGIN demo %s\r\n", pluginPassword)
	<-a.entered
	pids := in.plugins.PIDs()["httpauth"]
	if err := syscall.Kill(pids[len(pids)-1], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if l := c.line(); !strings.HasPrefix(l, "a NO [UNAVAILABLE]") {
		t.Fatalf("login during the crash: %q", l)
	}
	if _, l := login(t, in, "other", pluginPassword); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("another user while the plugin is down: %q", l)
	}
	a.unhold()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, l := login(t, in, "demo", pluginPassword)
		if strings.HasPrefix(l, "a OK") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not restarted: %q", l)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(in.plugins.PIDs()["httpauth"]); n != 2 {
		t.Errorf("%d processes, want 2", n)
	}
	// Hung past the timeout.
	a.hold()
	start := time.Now()
	if _, l := login(t, in, "demo", pluginPassword); !strings.HasPrefix(l, "a NO [UNAVAILABLE]") {
		t.Fatalf("hung plugin: %q", l)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the hung login took %s", d)
	}
	if _, l := login(t, in, "other", pluginPassword); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("another user while the plugin hangs: %q", l)
	}
	a.unhold()
	metrics := metricsText(t, in)
	for _, want := range []string{`imapproxy_plugin_restarts_total{plugin="httpauth"} 1`,
		`imapproxy_plugin_calls_total{plugin="httpauth",result="timeout"} 1`,
		`imapproxy_logins_total{result="unavailable"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(logs.String(), `msg="plugin call failed" component=plugins plugin=httpauth user=demo remote=127.0.0.1`) {
		t.Errorf("no log line for the failed call")
	}
}

// TestPluginBearerTokens: an authenticator plugin with bearer_tokens
// verifies OAuth 2.0 tokens without [oauth]: the mechanisms are offered,
// AUTHENTICATE XOAUTH2 and OAUTHBEARER reach the plugin as tokens (the
// httpauth example says "Auth-Method: oauthbearer"), and a token it
// refuses gets the RFC 7628 error challenge, then NO.
func TestPluginBearerTokens(t *testing.T) {
	const token = "tkn-5c1d0a77e2b94f"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Auth-Method") == "oauthbearer" && r.Header.Get("Auth-User") == "demo" && r.Header.Get("Auth-Pass") == token {
			w.Header().Set("Auth-Status", "OK")
		} else {
			w.Header().Set("Auth-Status", "Invalid token")
		}
	}))
	defer srv.Close()
	in, logs := serveRoutedPlugins(t, pluginTOML(t, "httpauth", "authenticator", "bearer_tokens = true", "-url", srv.URL))

	c := dialIMAP(t, in)
	lines, l := c.cmd("a", "CAPABILITY")
	if !strings.HasPrefix(l, "a OK") || len(lines) == 0 || !strings.Contains(lines[0], "AUTH=XOAUTH2") || !strings.Contains(lines[0], "AUTH=OAUTHBEARER") {
		t.Fatalf("CAPABILITY: %q %q", lines, l)
	}
	xoauth2 := func(tok string) string {
		return base64.StdEncoding.EncodeToString([]byte("user=demo\x01auth=Bearer " + tok + "\x01\x01"))
	}
	if _, l := c.cmd("b", "AUTHENTICATE XOAUTH2 "+xoauth2(token)); !strings.HasPrefix(l, "b OK") {
		t.Fatalf("XOAUTH2: %q", l)
	}
	if _, l := c.cmd("c", "SELECT INBOX"); !strings.HasPrefix(l, "c OK") {
		t.Fatalf("SELECT after XOAUTH2: %q", l)
	}
	c2 := dialIMAP(t, in)
	bearer := base64.StdEncoding.EncodeToString([]byte("n,a=demo,\x01auth=Bearer " + token + "\x01\x01"))
	if _, l := c2.cmd("a", "AUTHENTICATE OAUTHBEARER "+bearer); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("OAUTHBEARER: %q", l)
	}
	c3 := dialIMAP(t, in)
	fmt.Fprintf(c3.conn, "a AUTHENTICATE XOAUTH2 %s\r\n", xoauth2("tkn-wrong"))
	if l := c3.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("refused token: %q, want the error challenge", l)
	}
	fmt.Fprintf(c3.conn, "\r\n")
	if l := c3.line(); !strings.HasPrefix(l, "a NO") {
		t.Fatalf("refused token: %q", l)
	}
	if strings.Contains(logs.String(), token) {
		t.Error("the token is in the log")
	}
}

// TestServeRefusesMismatchedPlugin: a plugin whose file does not match its
// sha256 stops the boot, and check-config says so.
func TestServeRefusesMismatchedPlugin(t *testing.T) {
	dir := t.TempDir()
	sum := strings.Repeat("0", 64)
	text := fmt.Sprintf("state_dir = %q\n[[listen]]\naddress = \"127.0.0.1:0\"\ntls = \"none\"\nallow_cleartext_auth = true\n"+
		"[[plugin]]\nname = \"dir\"\nkind = \"authenticator\"\ncommand = %q\nsha256 = %q\n", dir, builtPlugins["userfile"], sum)
	path := filepath.Join(dir, "config.toml")
	os.WriteFile(path, []byte(text), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	in, err := startInstance(cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		in.shutdown(context.Background())
		t.Fatal("served with a mismatched plugin")
	}
	if !strings.Contains(err.Error(), `plugin "dir"`) || !strings.Contains(err.Error(), "does not match its sha256") {
		t.Errorf("error: %v", err)
	}
	code, _, errs := runCmd(t, "", "check-config", "-config", path)
	if code != 1 || !strings.Contains(errs, `plugin[0] "dir"`) || !strings.Contains(errs, "serve would not start it") {
		t.Errorf("check-config: exit %d, %q", code, errs)
	}
}

// TestPluginsWithDovecot: each example plugin in front of a real Dovecot.
func TestPluginsWithDovecot(t *testing.T) {
	d := dovecot.StartT(t, dovecot.Options{})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, d.CertPEM, 0o644)
	upstream := fmt.Sprintf("[[upstream]]\nname = \"dovecot\"\naddress = %q\ntls = \"implicit\"\nca_file = %q\n", d.TLSAddr, caFile)
	dir := t.TempDir()
	rules := writeJSONFile(t, dir, "rules.json", map[string]any{
		"domains": map[string]any{"example.net": map[string]string{"upstream": "dovecot", "username": "{local}"}},
	})
	hash, err := auth.HashPassword("alicepw")
	if err != nil {
		t.Fatal(err)
	}
	users := writeJSONFile(t, dir, "users.json", map[string]any{"users": []map[string]any{
		{"name": "alice@example.net", "logins": []string{"alice"}, "password_hash": hash},
	}})
	a := newAuthHTTP(t, "bob%40example.net", "bobpw")
	for name, authPlugin := range map[string]string{
		"userfile": pluginTOML(t, "userfile", "authenticator", "", "-users", users),
		"httpauth": pluginTOML(t, "httpauth", "authenticator", "", "-url", a.srv.URL),
	} {
		t.Run(name, func(t *testing.T) {
			in, _ := servePlugins(t, upstream+authPlugin+pluginTOML(t, "domainrouter", "router", "", "-config", rules))
			user, pw := "alice", "alicepw"
			if name == "httpauth" {
				user, pw = "bob@example.net", "bobpw"
			}
			c, l := login(t, in, user, pw)
			if !strings.HasPrefix(l, "a OK [CAPABILITY") {
				t.Fatalf("login: %q", l)
			}
			if _, l := c.cmd("b", "SELECT INBOX"); !strings.HasPrefix(l, "b OK") {
				t.Fatalf("SELECT: %q", l)
			}
			if _, l := login(t, in, user, "wrong-"+pw); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED]") {
				t.Fatalf("wrong password: %q", l)
			}
		})
	}
}
