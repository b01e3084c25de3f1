package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// testLogger sends the server's log to t.Logf until the test ends.
type testLogger struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (l *testLogger) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Logf("imapserver: "+format, args...)
	}
}

const (
	memUser     = "alice"
	memPassword = "s3cret \"quoted\" \\ p\u00e4ss"
)

// startMem starts an imapmemserver upstream with one user and returns its
// address and a pool trusting its certificate. With TLSImplicit it speaks
// TLS at once; with TLSStartTLS it offers STARTTLS and refuses to
// authenticate before it; with TLSNone it allows cleartext login.
func startMem(t *testing.T, mode TLSMode) (string, *x509.CertPool) {
	t.Helper()
	cert, pool := testTLS(t)
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}}

	mem := imapmemserver.New()
	user := imapmemserver.NewUser(memUser, memPassword)
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(user)

	logger := &testLogger{t: t}
	opts := &imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		Logger:       logger,
		InsecureAuth: mode == TLSNone,
	}
	if mode == TLSStartTLS {
		opts.TLSConfig = tlsConfig
	}
	srv := imapserver.New(opts)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if mode == TLSImplicit {
		ln = tls.NewListener(ln, tlsConfig)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-served
		logger.mu.Lock()
		logger.done = true
		logger.mu.Unlock()
	})
	return addr, pool
}

func TestMemServer(t *testing.T) {
	for _, mode := range []TLSMode{TLSNone, TLSImplicit, TLSStartTLS} {
		t.Run(mode.String(), func(t *testing.T) {
			addr, pool := startMem(t, mode)
			opts := Options{
				Name:           "mem",
				Address:        addr,
				TLS:            mode,
				TLSConfig:      &tls.Config{RootCAs: pool},
				CommandTimeout: 5 * time.Second,
			}
			ctx := context.Background()

			// A wrong password first, on its own connection.
			c, err := Dial(ctx, opts, ClientInfo{})
			if err != nil {
				t.Fatal(err)
			}
			err = c.Login(ctx, Credentials{Username: memUser, Password: "wrong"})
			if !errors.Is(err, ErrAuthFailed) {
				t.Errorf("wrong password: err = %v, want ErrAuthFailed", err)
			}
			c.Close()

			c, err = Dial(ctx, opts, ClientInfo{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			pre := c.Capabilities()
			if !hasCap(pre, "IMAP4rev1") || hasCap(pre, "LOGINDISABLED") || hasCap(pre, "STARTTLS") {
				t.Errorf("pre-login caps = %q", pre)
			}
			if err := c.Login(ctx, Credentials{Username: memUser, Password: memPassword}); err != nil {
				t.Fatal(err)
			}
			post := c.Capabilities()
			if !hasCap(post, "IDLE") {
				t.Errorf("post-login caps = %q", post)
			}
			if f := FilterCapabilities(post); hasCap(f, "SASL-IR") || !hasCap(f, "IDLE") {
				t.Errorf("filtered caps = %q", f)
			}

			conn, rest := c.Detach()
			defer conn.Close()
			if len(rest) != 0 {
				t.Errorf("leftover = %q", rest)
			}
			if _, isTLS := conn.(*tls.Conn); isTLS != (mode != TLSNone) {
				t.Errorf("detached conn is %T", conn)
			}
			relaySelect(t, conn)
		})
	}
}

// relaySelect uses a detached connection as the relay would.
func relaySelect(t *testing.T, conn net.Conn) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("r1 SELECT INBOX\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "r1 ") {
			if !strings.HasPrefix(line, "r1 OK") {
				t.Errorf("SELECT: %q", line)
			}
			return
		}
	}
}

func TestMemServerLoginDisabled(t *testing.T) {
	// Without TLS the memory server offers neither LOGIN nor AUTH=PLAIN.
	addr, _ := startMem(t, TLSStartTLS)
	c, err := Dial(context.Background(), Options{Address: addr, TLS: TLSNone}, ClientInfo{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !hasCap(c.Capabilities(), "LOGINDISABLED") {
		t.Fatalf("caps = %q", c.Capabilities())
	}
	err = c.Login(context.Background(), Credentials{Username: memUser, Password: memPassword})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

func TestMemServerUntrusted(t *testing.T) {
	for _, mode := range []TLSMode{TLSImplicit, TLSStartTLS} {
		t.Run(mode.String(), func(t *testing.T) {
			addr, _ := startMem(t, mode)
			_, err := Dial(context.Background(), Options{Address: addr, TLS: mode}, ClientInfo{})
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v", err)
			}
			var certErr *tls.CertificateVerificationError
			if !errors.As(err, &certErr) {
				t.Errorf("err = %v, want a certificate error", err)
			}
		})
	}
}
