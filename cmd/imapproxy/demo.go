package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"imapproxy/auth"
	"imapproxy/config"
	"imapproxy/internal/sample"
	"imapproxy/internal/selfsigned"
)

// demoUser and demoPassword are the demo's login; the demo listens on
// loopback only.
const (
	demoUser     = "demo"
	demoPassword = "demo"
)

func runDemo(args []string, stdout, stderr io.Writer, _ io.Reader) int {
	fs := newFlagSet("demo", "[-listen ADDR] [-tls-listen ADDR]", stderr)
	listen := fs.String("listen", "127.0.0.1:1143", "plaintext listener (cleartext login allowed: keep it on loopback)")
	tlsListen := fs.String("tls-listen", "127.0.0.1:1993", "implicit TLS listener (self-signed certificate)")
	debug := fs.Bool("debug", false, "log at debug level")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	level := "info"
	if *debug {
		level = "debug"
	}
	err := demo(ctx, demoOptions{listen: *listen, tlsListen: *tlsListen, logLevel: level}, stdout, stderr, nil)
	if err != nil {
		fmt.Fprintf(stderr, "imapproxy demo: %v\n", err)
		return 1
	}
	return 0
}

type demoOptions struct {
	listen, tlsListen string
	logLevel          string
}

// demoAddrs are the addresses a running demo serves on.
type demoAddrs struct {
	plain, tls string
	certFile   string
}

// demo runs upstream servers filled with sample mail and the proxy in front
// of them until ctx is done, then removes what it created. ready, if not
// nil, is called once everything listens.
func demo(ctx context.Context, opts demoOptions, stdout, stderr io.Writer, ready func(demoAddrs)) error {
	dir, err := os.MkdirTemp("", "imapproxy-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var ups []*demoUpstream
	defer func() {
		for _, up := range ups {
			up.Close()
		}
	}()
	for _, a := range demoAccounts {
		up, err := startDemoAccountUpstream(a.name)
		if err != nil {
			return err
		}
		ups = append(ups, up)
	}

	pair, err := selfsigned.Generate("localhost", "127.0.0.1", "::1")
	if err != nil {
		return err
	}
	certFile, keyFile, err := pair.WriteFiles(dir)
	if err != nil {
		return err
	}
	hash, err := auth.HashPassword(demoPassword)
	if err != nil {
		return err
	}
	text := fmt.Sprintf(`state_dir = %q
[log]
level = %q
[tls]
cert_file = %q
key_file = %q
[[listen]]
address = %q
tls = "none"
allow_cleartext_auth = true
[[listen]]
address = %q
tls = "implicit"
%s[[user]]
name = %q
password_hash = %q
mode = "merge"
unified_inbox = true
default_account = %q
%s`, dir, opts.logLevel, certFile, keyFile, opts.listen, opts.tlsListen, demoUpstreamsTOML(ups), demoUser, hash, demoAccounts[0].name, demoAccountsTOML())
	cfgPath := dir + "/demo.toml"
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	logger := newLogger(cfg.Log, stderr)
	in, err := startInstance(cfg, logger)
	if err != nil {
		return err
	}
	addrs := in.proxy.Addrs()
	da := demoAddrs{plain: addrs[0].String(), tls: addrs[1].String(), certFile: certFile}
	printDemoHelp(stdout, da)
	if ready != nil {
		ready(da)
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nStopping the demo.")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	in.shutdown(sctx)
	return nil
}

// demoAccounts are the demo user's accounts, each on an upstream of its
// own with the sample mail of its name, mounted under its prefix; the
// first is the default account.
var demoAccounts = []struct{ name, prefix string }{
	{"work", "Work"},
	{"home", "Home"},
	{"lists", "Lists"},
}

// demoUpstreamsTOML returns the [[upstream]] entries of ups, which serve
// demoAccounts in order.
func demoUpstreamsTOML(ups []*demoUpstream) string {
	var b strings.Builder
	for i, up := range ups {
		fmt.Fprintf(&b, "[[upstream]]\nname = %q\naddress = %q\ntls = \"none\"\n", demoAccounts[i].name+"-mail", up.Addr().String())
	}
	return b.String()
}

// demoAccountsTOML returns the demo user's [[user.account]] entries. The
// accounts take the client's password (passthrough), which each upstream
// shares.
func demoAccountsTOML() string {
	var b strings.Builder
	for _, a := range demoAccounts {
		fmt.Fprintf(&b, "[[user.account]]\nname = %q\nupstream = %q\nprefix = %q\n", a.name, a.name+"-mail", a.prefix)
	}
	return b.String()
}

// demoUpstream is an in-process IMAP server with the mail of one demo
// account.
type demoUpstream struct {
	srv *imapserver.Server
	ln  net.Listener
}

func (d *demoUpstream) Addr() net.Addr { return d.ln.Addr() }

func (d *demoUpstream) Close() error { return d.srv.Close() }

// startDemoUpstream starts an upstream with the first demo account's mail
// (the tests' upstream with sample mail).
func startDemoUpstream() (*demoUpstream, error) {
	return startDemoAccountUpstream(demoAccounts[0].name)
}

// startDemoAccountUpstream starts an upstream whose user demo/demo holds
// the sample mail of account.
func startDemoAccountUpstream(account string) (*demoUpstream, error) {
	mem := imapmemserver.New()
	u := imapmemserver.NewUser(demoUser, demoPassword)
	if err := sample.Fill(u, sample.Account(account, time.Now())); err != nil {
		return nil, fmt.Errorf("sample mail: %w", err)
	}
	mem.AddUser(u)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true, // loopback only, behind the proxy
		Logger:       slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
			slog.Error("demo upstream stopped", "err", err)
		}
	}()
	return &demoUpstream{srv: srv, ln: ln}, nil
}

func printDemoHelp(w io.Writer, a demoAddrs) {
	host, port, _ := net.SplitHostPort(a.plain)
	thost, tport, _ := net.SplitHostPort(a.tls)
	fmt.Fprintf(w, `imapproxy demo is running: one merged account over three built-in IMAP servers with sample mail.
Their folders appear under Work/, Home/ and Lists/; INBOX unites the three inboxes.

  IMAP, plaintext (cleartext login allowed, loopback only): %s
  IMAPS, implicit TLS (self-signed certificate):            %s
  user: %s    password: %s
  certificate: %s

Try it:
  curl --url "imap://%s:%s/INBOX;UID=1" --user %s:%s
  curl --insecure --url "imaps://%s:%s/" --user %s:%s
  python3 -c "import imaplib; m = imaplib.IMAP4('%s', %s); m.login('%s', '%s'); print(m.select('INBOX')); print(m.fetch('1:*', '(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])'))"

Or point a mail client at %s port %s (SSL/TLS, accept the certificate) with the login above.
Press Ctrl-C to stop; everything the demo created is removed.
`, a.plain, a.tls, demoUser, demoPassword, a.certFile,
		host, port, demoUser, demoPassword,
		thost, tport, demoUser, demoPassword,
		host, port, demoUser, demoPassword,
		thost, tport)
}
