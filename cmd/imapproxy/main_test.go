package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/goleak"

	"imapproxy/auth"
	"imapproxy/internal/sample"
	"imapproxy/plugins/examples"
)

// builtPlugins are the example plugins, compiled by TestMain.
var builtPlugins map[string]string

// TestMain builds the example plugins, runs the tests and checks for
// leaked goroutines.
func TestMain(m *testing.M) {
	if args := os.Getenv(commandHelperEnv); args != "" {
		// A helper process: the imapproxy command itself (see
		// runCommandProcess).
		os.Exit(run(strings.Fields(args), os.Stdout, os.Stderr, os.Stdin))
	}
	dir, err := os.MkdirTemp("", "imapproxy-cmd-plugins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if builtPlugins, err = examples.Build(dir); err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

func runCmd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb, strings.NewReader(stdin))
	return code, out.String(), errb.String()
}

func TestCheckConfigExample(t *testing.T) {
	code, out, errs := runCmd(t, "", "check-config", "-config", "../../config.example.toml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "OK") {
		t.Errorf("no summary: %q", out)
	}
}

func TestCheckConfigError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(path, []byte("[[listen]]\naddress = \"127.0.0.1:143\"\ntls = \"tlss\"\n"), 0o600)
	code, _, errs := runCmd(t, "", "check-config", "-config", path)
	if code != 1 || !strings.Contains(errs, "bad.toml:3") || !strings.Contains(errs, "listen[0].tls") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

func TestHashPassword(t *testing.T) {
	code, out, errs := runCmd(t, "s3cret\n", "hash-password")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	h := strings.TrimSpace(out)
	if !strings.HasPrefix(h, "$argon2id$") {
		t.Fatalf("hash %q", h)
	}
	if ok, err := auth.CheckPassword(h, "s3cret"); !ok || err != nil {
		t.Fatalf("hash does not verify: %v", err)
	}
	if code, _, _ := runCmd(t, "", "hash-password"); code == 0 {
		t.Errorf("empty password accepted")
	}
}

func TestVerbsHelp(t *testing.T) {
	for _, v := range []string{"serve", "check-config", "hash-password", "demo", "version"} {
		code, _, errs := runCmd(t, "", v, "-h")
		if code != 0 || !strings.Contains(errs, "Usage: imapproxy "+v) {
			t.Errorf("%s -h: exit %d, %q", v, code, errs)
		}
	}
	if code, _, _ := runCmd(t, "", "nope"); code != 2 {
		t.Errorf("unknown verb: exit %d", code)
	}
}

// TestDemo runs the demo and reads mail through both of its listeners.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan demoAddrs, 1)
	done := make(chan error, 1)
	var out, errb bytes.Buffer
	go func() {
		done <- demo(ctx, demoOptions{listen: "127.0.0.1:0", tlsListen: "127.0.0.1:0", logLevel: "info"}, &out, &errb, func(a demoAddrs) { ready <- a })
	}()
	var a demoAddrs
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatalf("demo: %v\n%s", err, errb.String())
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not start")
	}
	certPEM, err := os.ReadFile(a.certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	plain, err := imapclient.DialInsecure(a.plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	tlsc, err := imapclient.DialTLS(a.tls, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	// INBOX unites the three accounts' inboxes.
	wantInbox := 0
	for _, a := range demoAccounts {
		for _, m := range sample.Account(a.name, time.Now()) {
			if m.Mailbox == "" || m.Mailbox == sample.Inbox {
				wantInbox++
			}
		}
	}
	for name, c := range map[string]*imapclient.Client{"plain": plain, "tls": tlsc} {
		if err := c.Login(demoUser, demoPassword).Wait(); err != nil {
			t.Fatalf("%s: login: %v", name, err)
		}
		mboxes, err := c.List("", "*", nil).Collect()
		if err != nil {
			t.Fatalf("%s: list: %v", name, err)
		}
		names := make(map[string]bool)
		for _, m := range mboxes {
			names[m.Mailbox] = true
		}
		for _, want := range []string{"INBOX", "Work/INBOX", "Work/Sent", "Home/INBOX", "Home/Projects/Apollo", "Lists/INBOX", "Lists/Archive"} {
			if !names[want] {
				t.Errorf("%s: LIST lacks %s (has %v)", name, want, names)
			}
		}
		sel, err := c.Select("INBOX", nil).Wait()
		if err != nil || int(sel.NumMessages) != wantInbox {
			t.Fatalf("%s: select INBOX: %v, %d messages, want %d", name, err, sel.NumMessages, wantInbox)
		}
		msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
		if err != nil || len(msgs) != 1 || msgs[0].Envelope == nil || msgs[0].Envelope.Subject == "" {
			t.Fatalf("%s: fetch: %v %+v", name, err, msgs)
		}
		if body := msgs[0].FindBodySection(&imap.FetchItemBodySection{Peek: true}); len(body) == 0 {
			t.Errorf("%s: fetch returned no body", name)
		}
		c.Logout().Wait()
		c.Close()
	}
	if !strings.Contains(out.String(), "user: demo") || !strings.Contains(out.String(), "curl") {
		t.Errorf("help text:\n%s", out.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(a.certFile)); !os.IsNotExist(err) {
		t.Errorf("demo left %s behind", filepath.Dir(a.certFile))
	}
}
