package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"imapproxy/auth"
	"imapproxy/config"
	"imapproxy/internal/selfsigned"
	"imapproxy/router"
)

// testPair is the proxy's certificate in tests.
var testPair = func() selfsigned.Pair {
	p, err := selfsigned.Generate("localhost", "127.0.0.1")
	if err != nil {
		panic(err)
	}
	return p
}()

// testLogger sends the proxy's logs to t.Logf and keeps them for checks.
type testLogger struct {
	t  testing.TB
	mu sync.Mutex
	sb strings.Builder
}

func (l *testLogger) Write(p []byte) (int, error) {
	runLogs.write(p)
	l.mu.Lock()
	l.sb.Write(p)
	l.mu.Unlock()
	l.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (l *testLogger) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sb.String()
}

// baseConfig returns a config with one listener of the given mode and one
// upstream at upAddr (plaintext), with the defaults a test wants.
func baseConfig(mode config.TLSMode, upAddr string) *config.Config {
	return &config.Config{
		Listen: []config.Listener{{Address: "127.0.0.1:0", TLS: mode}},
		Limits: config.Limits{
			MaxConnections:      100,
			MaxConnectionsPerIP: 50,
			MaxLineLength:       8192,
			MaxLiteralPreAuth:   8192,
			PreAuthTimeout:      config.Duration(10 * time.Second),
			IdleTimeout:         config.Duration(30 * time.Minute),
			MaxAuthFailures:     3,
			AuthDelay:           config.Duration(time.Millisecond),
			MaxAuthDelay:        config.Duration(10 * time.Millisecond),
			ShutdownGrace:       config.Duration(5 * time.Second),
		},
		Upstreams: []config.Upstream{{
			Name: "up", Address: upAddr, TLS: config.TLSNone,
			ConnectTimeout: config.Duration(2 * time.Second),
			CommandTimeout: config.Duration(2 * time.Second),
		}},
		Routes: []config.Route{{Match: "*", Upstream: "up", Username: "{user}", Verify: config.VerifyUpstream}},
	}
}

// testProxy is a running proxy.
type testProxy struct {
	srv  *Server
	addr string
	logs *testLogger
	done chan struct{}
}

func startProxy(t testing.TB, cfg *config.Config) *testProxy {
	t.Helper()
	return startProxyWith(t, cfg, nil)
}

// startProxyWith starts a proxy whose authenticator and server options
// tune may change (a store, a sealer, OAuth, revocation polling).
func startProxyWith(t testing.TB, cfg *config.Config, tune func(*auth.Options, *Options)) *testProxy {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, err := testPair.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := NewCertStore(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testLogger{t: t}
	rt := router.New(cfg)
	ao := auth.Options{
		Users: cfg.Users, UpstreamVerifies: rt.VerifiedByUpstream,
		Policy: func(login string) auth.Policy {
			req, grace := rt.Policy(login)
			return auth.Policy{Require2FA: req, TOTPGrace: grace.D()}
		},
		TOTPGrace:        cfg.Auth.TOTPGrace.D(),
		LockoutThreshold: cfg.Auth.LockoutThreshold, LockoutWindow: cfg.Auth.LockoutWindow.D(),
		DelayBase: cfg.Limits.AuthDelay.D(), DelayMax: cfg.Limits.MaxAuthDelay.D(),
	}
	po := Options{
		Config: cfg,
		Router: rt,
		Certs:  certs,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if tune != nil {
		tune(&ao, &po)
	}
	a := auth.NewAuthenticator(ao)
	t.Cleanup(a.Close) // after the proxy's shutdown, before the store closes
	po.Auth = a
	srv, err := New(po)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	tp := &testProxy{srv: srv, addr: srv.Addrs()[0].String(), logs: logs, done: make(chan struct{})}
	go func() {
		defer close(tp.done)
		srv.Serve()
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-tp.done
	})
	return tp
}

// startMemUpstream runs an imapmemserver with users alice/alicepw and
// bob/bobpw on 127.0.0.1 in plaintext.
func startMemUpstream(t testing.TB) (addr string, alice *imapmemserver.User) {
	t.Helper()
	mem := imapmemserver.New()
	alice = imapmemserver.NewUser("alice", "alicepw")
	alice.Create("INBOX", nil)
	mem.AddUser(alice)
	bob := imapmemserver.NewUser("bob", "bobpw")
	bob.Create("INBOX", nil)
	mem.AddUser(bob)
	s := serveIMAP(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		func() imapserver.Session { return mem.NewSession() })
	return s.addr, alice
}

// testIMAPServer is an in-process imapserver on 127.0.0.1 in plaintext
// that can be taken down and brought back at the same address (the
// sessions' backend, and so the mail, stays).
type testIMAPServer struct {
	t          testing.TB
	caps       imap.CapSet
	newSession func() imapserver.Session
	addr       string
	srv        *imapserver.Server
	done       chan struct{}
}

// serveIMAP starts a testIMAPServer, stopped when the test ends.
func serveIMAP(t testing.TB, caps imap.CapSet, newSession func() imapserver.Session) *testIMAPServer {
	t.Helper()
	s := &testIMAPServer{t: t, caps: caps, newSession: newSession}
	s.start("127.0.0.1:0")
	t.Cleanup(s.stop)
	return s
}

// start serves on addr (retrying briefly while the old socket lingers).
func (s *testIMAPServer) start(addr string) {
	s.t.Helper()
	var ln net.Listener
	var err error
	for try := 0; try < 50; try++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.srv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return s.newSession(), nil, nil
		},
		Caps:         s.caps,
		InsecureAuth: true,
	})
	s.done = make(chan struct{})
	srv, done := s.srv, s.done
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
}

// stop closes the listener and every connection.
func (s *testIMAPServer) stop() {
	if s.srv == nil {
		return
	}
	s.srv.Close()
	<-s.done
	s.srv = nil
}

// textClient speaks raw IMAP to the proxy.
type textClient struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func dialText(t testing.TB, addr string, useTLS bool) *textClient {
	t.Helper()
	var c net.Conn
	var err error
	if useTLS {
		c, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: testPair.CertPool(), ServerName: "127.0.0.1"})
	} else {
		c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &textClient{t: t, conn: c, br: bufio.NewReader(c)}
}

func (c *textClient) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

// line reads one line without CRLF.
func (c *textClient) line() string {
	c.t.Helper()
	l, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// until reads lines until one starts with prefix and returns all of them.
func (c *textClient) until(prefix string) []string {
	c.t.Helper()
	var lines []string
	for {
		l := c.line()
		lines = append(lines, l)
		if strings.HasPrefix(l, prefix) {
			return lines
		}
	}
}

// expectClosed checks that the server closes the connection, after any
// remaining lines.
func (c *textClient) expectClosed() []string {
	c.t.Helper()
	var lines []string
	for {
		l, err := c.br.ReadString('\n')
		if l != "" {
			lines = append(lines, strings.TrimRight(l, "\r\n"))
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
				c.t.Fatalf("expected close, got %v after %q", err, lines)
			}
			return lines
		}
	}
}

func (c *textClient) startTLS() {
	c.t.Helper()
	tc := tls.Client(c.conn, &tls.Config{RootCAs: testPair.CertPool(), ServerName: "127.0.0.1"})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn = tc
	c.br = bufio.NewReader(tc)
}

// fakeUpstream is a scripted IMAP server for edge cases. It greets with
// preCaps, accepts any LOGIN with postCaps, and after login records every
// command it receives, answering each per answer (default: tagged OK).
type fakeUpstream struct {
	t        testing.TB
	ln       net.Listener
	preCaps  string
	postCaps string
	// syncLiterals: answer a synchronizing literal with "+" (true) or
	// with a tagged BAD (false).
	syncLiterals bool
	// onConn, when set, replaces the whole script.
	onConn func(c net.Conn)

	mu       sync.Mutex
	received []string // complete command texts after login, literals inlined
	ids      []string // ID command lines
	conns    []net.Conn
	wg       sync.WaitGroup
}

func startFake(t testing.TB, f *fakeUpstream) *fakeUpstream {
	t.Helper()
	f.t = t
	if f.preCaps == "" {
		f.preCaps = "IMAP4rev1 ID AUTH=PLAIN"
	}
	if f.postCaps == "" {
		f.postCaps = "IMAP4rev1 IDLE"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ln = ln
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				if f.onConn != nil {
					f.onConn(c)
					return
				}
				f.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *fakeUpstream) addr() string { return f.ln.Addr().String() }

func (f *fakeUpstream) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.received...)
}

// serve follows a minimal IMAP server script.
func (f *fakeUpstream) serve(c net.Conn) {
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "* OK [CAPABILITY %s] fake ready\r\n", f.preCaps)
	loggedIn := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		text := strings.TrimRight(line, "\r\n")
		full := text
		tag, _, _ := strings.Cut(text, " ")
		rejected := false
		for {
			n, plus, _, ok := parseLiteralMarker([]byte(text))
			if !ok {
				break
			}
			if !plus {
				if !f.syncLiterals {
					fmt.Fprintf(c, "%s BAD no literals here\r\n", tag)
					rejected = true
					break
				}
				io.WriteString(c, "+ go ahead\r\n")
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(br, buf); err != nil {
				return
			}
			rest, err := br.ReadString('\n')
			if err != nil {
				return
			}
			text = strings.TrimRight(rest, "\r\n")
			full += "\n<" + string(buf) + ">" + text
		}
		if !loggedIn {
			fields := strings.Fields(full)
			if len(fields) < 2 {
				continue
			}
			switch strings.ToUpper(fields[1]) {
			case "ID":
				f.mu.Lock()
				f.ids = append(f.ids, full)
				f.mu.Unlock()
				fmt.Fprintf(c, "* ID NIL\r\n%s OK ID done\r\n", tag)
			case "CAPABILITY":
				fmt.Fprintf(c, "* CAPABILITY %s\r\n%s OK done\r\n", f.preCaps, tag)
			case "LOGIN", "AUTHENTICATE":
				loggedIn = true
				fmt.Fprintf(c, "%s OK [CAPABILITY %s] logged in\r\n", tag, f.postCaps)
			default:
				fmt.Fprintf(c, "%s BAD unexpected\r\n", tag)
			}
			continue
		}
		if rejected {
			continue
		}
		f.mu.Lock()
		f.received = append(f.received, full)
		f.mu.Unlock()
		if strings.EqualFold(full, "DONE") {
			continue
		}
		fmt.Fprintf(c, "%s OK done\r\n", tag)
	}
}

// literalReader is an imap.LiteralReader over a string.
type literalReader struct {
	*strings.Reader
}

func (l literalReader) Size() int64 { return int64(l.Reader.Len()) }

func literal(s string) imap.LiteralReader { return literalReader{strings.NewReader(s)} }

func mustPrefixes(t testing.TB, cidrs ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func newBufReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
