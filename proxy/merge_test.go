package proxy

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"imapproxy/auth"
	"imapproxy/config"
	"imapproxy/merge"
	"imapproxy/store"
)

// mergeConfig returns a config with upstreams "one" and "two" at addrs and
// two merge users over them: alice (no hash: the first account's upstream
// checks her password) and dana (a hash for "danapw"; her accounts log in
// as alice).
func mergeConfig(t testing.TB, addr1, addr2 string) *config.Config {
	t.Helper()
	cfg := baseConfig(config.TLSNone, addr1)
	cfg.Listen[0].AllowCleartextAuth = true
	cfg.Routes = nil
	up := cfg.Upstreams[0]
	up.Name, up.Address = "one", addr1
	up2 := up
	up2.Name, up2.Address = "two", addr2
	cfg.Upstreams = []config.Upstream{up, up2}
	hash, err := auth.HashPassword("danapw")
	if err != nil {
		t.Fatal(err)
	}
	accounts := func(pw config.Secret) []config.Account {
		return []config.Account{
			{Name: "first", Upstream: "one", Username: "alice", Password: pw, Prefix: "One"},
			{Name: "second", Upstream: "two", Username: "alice", Password: pw, Prefix: "Two"},
		}
	}
	cfg.Users = []config.User{
		{Name: "alice", Mode: config.ModeMerge, UnifiedInbox: true, DefaultAccount: "first",
			Accounts: accounts(config.Secret{Kind: config.SecretPassthrough})},
		{Name: "dana", PasswordHash: hash, Mode: config.ModeMerge, UnifiedInbox: true, DefaultAccount: "first",
			Accounts: accounts(config.Secret{Kind: config.SecretEnv, Ref: "IMAPPROXY_TEST_MERGE_PW"})},
	}
	t.Setenv("IMAPPROXY_TEST_MERGE_PW", "alicepw")
	registerSecret("danapw")
	return cfg
}

// startMergeProxy starts a proxy for cfg with a merge.Manager, which is
// closed after the proxy's shutdown.
func startMergeProxy(t *testing.T, cfg *config.Config) *testProxy {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m := merge.NewManager(merge.ManagerOptions{Store: st})
	t.Cleanup(m.Close) // runs after the proxy's shutdown
	return startProxyWith(t, cfg, func(_ *auth.Options, o *Options) { o.Merge = m })
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// mergeLogin logs in and checks that the LOGIN's answer is the first line
// after the login: one tagged OK with the merged session's capabilities.
func mergeLogin(t *testing.T, c *textClient, user, password string) {
	t.Helper()
	c.line() // greeting
	// A command pipelined behind the LOGIN reaches the merged session.
	c.send("a LOGIN " + user + " " + password + "\r\nb NOOP\r\n")
	ok := c.line()
	if !strings.HasPrefix(ok, "a OK [CAPABILITY IMAP4rev") || !strings.Contains(ok, " IMAP4rev1") || !strings.Contains(ok, "IMAP4rev2") || !strings.Contains(ok, "NAMESPACE") ||
		!strings.Contains(ok, "MOVE") || !strings.HasSuffix(ok, "] Logged in") {
		t.Fatalf("login answer %q", ok)
	}
	if lines := c.until("b "); !strings.HasPrefix(lines[len(lines)-1], "b OK") {
		t.Fatalf("pipelined NOOP: %q", lines)
	}
}

func TestMergeLogin(t *testing.T) {
	addr1, alice1 := startMemUpstream(t)
	addr2, alice2 := startMemUpstream(t)
	for _, subject := range []string{"one-a"} {
		alice1.Append("INBOX", literal("Subject: "+subject+"\r\n\r\nhello\r\n"), &imap.AppendOptions{})
	}
	for _, subject := range []string{"two-a", "two-b"} {
		alice2.Append("INBOX", literal("Subject: "+subject+"\r\n\r\nhello\r\n"), &imap.AppendOptions{})
	}
	p := startMergeProxy(t, mergeConfig(t, addr1, addr2))

	for _, login := range [][2]string{{"alice", "alicepw"}, {"dana", "danapw"}} {
		t.Run(login[0], func(t *testing.T) {
			c := dialText(t, p.addr, false)
			mergeLogin(t, c, login[0], login[1])

			c.send("c LIST \"\" \"*\"\r\n")
			list := strings.Join(c.until("c "), "\n")
			for _, want := range []string{"One/INBOX", "Two/INBOX", "INBOX"} {
				if !strings.Contains(list, want) {
					t.Errorf("LIST lacks %s:\n%s", want, list)
				}
			}
			if !strings.Contains(list, "c OK") {
				t.Fatalf("LIST failed:\n%s", list)
			}
			c.send("d SELECT INBOX\r\n")
			sel := strings.Join(c.until("d "), "\n")
			if !strings.Contains(sel, "* 3 EXISTS") || !strings.Contains(sel, "d OK") {
				t.Fatalf("SELECT INBOX:\n%s", sel)
			}
			c.send("e FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n")
			fetch := strings.Join(c.until("e "), "\n")
			for _, want := range []string{"one-a", "two-a", "two-b", "e OK"} {
				if !strings.Contains(fetch, want) {
					t.Errorf("FETCH lacks %s:\n%s", want, fetch)
				}
			}
			c.send("f LOGOUT\r\n")
			c.until("f OK")
			c.expectClosed()
		})
	}

	// The first account's upstream checks alice's password.
	c := dialText(t, p.addr, false)
	c.line()
	c.send("a LOGIN alice wrong-secret\r\n")
	if l := c.line(); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("wrong password: %q", l)
	}
	c.send("b LOGOUT\r\n")
	c.until("b OK")
}

func TestMergeAccountsDown(t *testing.T) {
	addr1, addr2 := deadAddr(t), deadAddr(t)
	p := startMergeProxy(t, mergeConfig(t, addr1, addr2))
	for _, login := range [][2]string{{"alice", "alicepw"}, {"dana", "danapw"}} {
		c := dialText(t, p.addr, false)
		c.line()
		c.send("a LOGIN " + login[0] + " " + login[1] + "\r\n")
		if l := c.line(); !strings.HasPrefix(l, "a NO [UNAVAILABLE]") {
			t.Fatalf("%s: login with every account down: %q", login[0], l)
		}
		// The front door goes on.
		c.send("b CAPABILITY\r\n")
		c.until("b OK")
	}
}

func TestMergeOneAccountDown(t *testing.T) {
	addr1, alice1 := startMemUpstream(t)
	alice1.Append("INBOX", literal("Subject: one-a\r\n\r\nhello\r\n"), &imap.AppendOptions{})
	// dana's first account is down; she still gets her second.
	p := startMergeProxy(t, mergeConfig(t, deadAddr(t), addr1))
	c := dialText(t, p.addr, false)
	mergeLogin(t, c, "dana", "danapw")
	c.send("c LIST \"\" \"*\"\r\n")
	if list := strings.Join(c.until("c "), "\n"); !strings.Contains(list, "Two/INBOX") || !strings.Contains(list, "c OK") {
		t.Fatalf("LIST:\n%s", list)
	}
	c.send("d LOGOUT\r\n")
	c.until("d OK")
}

func TestMergeWithoutManager(t *testing.T) {
	addr1, _ := startMemUpstream(t)
	p := startProxy(t, mergeConfig(t, addr1, addr1))
	c := dialText(t, p.addr, false)
	c.line()
	c.send("a LOGIN dana danapw\r\n")
	if l := c.line(); !strings.HasPrefix(l, "a NO [UNAVAILABLE]") {
		t.Fatalf("merge login without a manager: %q", l)
	}
}

func TestMergeGracefulShutdown(t *testing.T) {
	for _, idle := range []bool{false, true} {
		name := "selected"
		if idle {
			name = "idling"
		}
		t.Run(name, func(t *testing.T) { testMergeShutdown(t, idle) })
	}
}

// testMergeShutdown checks that Shutdown ends merged sessions at once with
// a BYE: one with a mailbox selected, and one in IDLE if idle.
func testMergeShutdown(t *testing.T, idle bool) {
	addr1, _ := startMemUpstream(t)
	addr2, _ := startMemUpstream(t)
	p := startMergeProxy(t, mergeConfig(t, addr1, addr2))

	clients := map[string]*textClient{}
	selected := dialText(t, p.addr, false)
	mergeLogin(t, selected, "dana", "danapw")
	selected.send("c SELECT INBOX\r\n")
	selected.until("c OK")
	clients["selected"] = selected
	if idle {
		c := dialText(t, p.addr, false)
		mergeLogin(t, c, "alice", "alicepw")
		c.send("c IDLE\r\n")
		if l := c.line(); !strings.HasPrefix(l, "+") {
			t.Fatalf("IDLE: %q", l)
		}
		clients["idle"] = c
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	for name, c := range clients {
		lines := c.expectClosed()
		if len(lines) == 0 || lines[len(lines)-1] != "* BYE Server shutting down" {
			t.Errorf("%s session got %q", name, lines)
		}
	}
}
