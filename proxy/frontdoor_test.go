package proxy

import (
	"io"
	"net"

	"encoding/base64"
	"fmt"
	"imapproxy/auth"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"imapproxy/config"
)

func TestLoginAndRelayMemserver(t *testing.T) {
	upAddr, alice := startMemUpstream(t)
	msg := "Subject: hello\r\n\r\nbody\r\n"
	if _, err := alice.Append("INBOX", literal(msg), &imap.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(config.TLSNone, upAddr)
	cfg.Listen[0].AllowCleartextAuth = true
	p := startProxy(t, cfg)

	c, err := imapclient.DialInsecure(p.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "alicepw").Wait(); err != nil {
		t.Fatalf("login: %v", err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 1 {
		t.Fatalf("NumMessages = %d, want 1", sel.NumMessages)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].Envelope.Subject != "hello" {
		t.Fatalf("fetch = %+v", msgs)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestPreAuthCapabilitiesAndPrivacy(t *testing.T) {
	upAddr, _ := startMemUpstream(t)
	p := startProxy(t, baseConfig(config.TLSStartTLS, upAddr))
	c := dialText(t, p.addr, false)
	greet := c.line()
	for _, want := range []string{"STARTTLS", "LOGINDISABLED"} {
		if !strings.Contains(greet, want) {
			t.Errorf("greeting %q lacks %s", greet, want)
		}
	}
	if strings.Contains(greet, "AUTH=PLAIN") {
		t.Errorf("AUTH=PLAIN advertised before TLS: %q", greet)
	}
	c.send("a LOGIN alice alicepw\r\n")
	if l := c.line(); !strings.HasPrefix(l, "a NO [PRIVACYREQUIRED]") {
		t.Fatalf("LOGIN before TLS: %q", l)
	}
	c.send("b AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alicepw")) + "\r\n")
	if l := c.line(); !strings.HasPrefix(l, "b NO [PRIVACYREQUIRED]") {
		t.Fatalf("AUTHENTICATE before TLS: %q", l)
	}
	// A command pipelined after STARTTLS in the clear must be dropped.
	c.send("c STARTTLS\r\nd LOGIN alice alicepw\r\n")
	if l := c.line(); !strings.HasPrefix(l, "c OK") {
		t.Fatalf("STARTTLS: %q", l)
	}
	c.startTLS()
	c.send("e CAPABILITY\r\n")
	lines := c.until("e ")
	if !strings.HasPrefix(lines[0], "* CAPABILITY") || strings.Contains(lines[0], "STARTTLS") ||
		strings.Contains(lines[0], "LOGINDISABLED") || !strings.Contains(lines[0], "AUTH=PLAIN") {
		t.Fatalf("capabilities after STARTTLS: %q", lines)
	}
	c.send("f LOGIN alice alicepw\r\n")
	l := c.line()
	if !strings.HasPrefix(l, "f OK [CAPABILITY ") {
		t.Fatalf("LOGIN after STARTTLS: %q", l)
	}
	c.send("g LOGOUT\r\n")
	c.until("g OK")
}

func TestImplicitTLSAndAuthenticatePlain(t *testing.T) {
	upAddr, _ := startMemUpstream(t)
	p := startProxy(t, baseConfig(config.TLSImplicit, upAddr))
	c := dialText(t, p.addr, true)
	if l := c.line(); !strings.Contains(l, "AUTH=PLAIN") || strings.Contains(l, "STARTTLS") {
		t.Fatalf("greeting over TLS: %q", l)
	}
	// Without SASL-IR: continuation.
	c.send("a AUTHENTICATE PLAIN\r\n")
	if l := c.line(); l != "+ " && l != "+" {
		t.Fatalf("continuation: %q", l)
	}
	c.send(base64.StdEncoding.EncodeToString([]byte("\x00bob\x00bobpw")) + "\r\n")
	if l := c.line(); !strings.HasPrefix(l, "a OK [CAPABILITY") {
		t.Fatalf("AUTHENTICATE: %q", l)
	}
	c.send("b SELECT INBOX\r\n")
	c.until("b OK")
}

func TestLiteralLoginAndLimits(t *testing.T) {
	upAddr, _ := startMemUpstream(t)
	cfg := baseConfig(config.TLSNone, upAddr)
	cfg.Listen[0].AllowCleartextAuth = true
	cfg.Limits.MaxLiteralPreAuth = 100
	cfg.Limits.MaxLineLength = 200
	p := startProxy(t, cfg)
	c := dialText(t, p.addr, false)
	c.line()
	c.send("a LOGIN {5}\r\n")
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("continuation: %q", l)
	}
	c.send("alice {7+}\r\nalicepw\r\n")
	if l := c.line(); !strings.HasPrefix(l, "a OK [CAPABILITY") {
		t.Fatalf("literal LOGIN: %q", l)
	}

	c2 := dialText(t, p.addr, false)
	c2.line()
	c2.send("a LOGIN {1000}\r\n")
	if l := c2.line(); !strings.HasPrefix(l, "a BAD [TOOBIG]") {
		t.Fatalf("big literal: %q", l)
	}
	c2.send("b " + strings.Repeat("x", 300) + "\r\n")
	if lines := c2.expectClosed(); len(lines) == 0 || !strings.HasPrefix(lines[0], "* BYE") {
		t.Fatalf("long line: %q", lines)
	}
}

func TestWrongPasswordDelayAndClose(t *testing.T) {
	upAddr, _ := startMemUpstream(t)
	cfg := baseConfig(config.TLSNone, upAddr)
	cfg.Listen[0].AllowCleartextAuth = true
	cfg.Limits.AuthDelay = config.Duration(50 * time.Millisecond)
	cfg.Limits.MaxAuthDelay = config.Duration(time.Second)
	p := startProxy(t, cfg)
	c := dialText(t, p.addr, false)
	c.line()
	var last time.Duration
	for i := 1; i <= 3; i++ {
		start := time.Now()
		c.send(fmt.Sprintf("a%d LOGIN alice wrong-secret-%d\r\n", i, i))
		l := c.line()
		if !strings.HasPrefix(l, fmt.Sprintf("a%d NO [AUTHENTICATIONFAILED]", i)) {
			t.Fatalf("attempt %d: %q", i, l)
		}
		d := time.Since(start)
		if d < 50*time.Millisecond || (i > 1 && d <= last) {
			t.Errorf("attempt %d answered after %v (previous %v): delay does not grow", i, d, last)
		}
		last = d
	}
	lines := c.expectClosed()
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "* BYE") {
		t.Fatalf("after 3 failures: %q", lines)
	}
	logs := p.logs.String()
	if !strings.Contains(logs, `msg="login failed" user=alice remote=127.0.0.1`) {
		t.Errorf("no stable failure line in logs:\n%s", logs)
	}
	if strings.Contains(logs, "wrong-secret") {
		t.Errorf("password in logs:\n%s", logs)
	}
}

func TestUpstreamDownAndStalled(t *testing.T) {
	// A port with nothing behind it.
	down := startFake(t, &fakeUpstream{})
	downAddr := down.addr()
	down.ln.Close()

	stall := startFake(t, &fakeUpstream{onConn: func(c net.Conn) {
		// Greets, then never answers.
		fmt.Fprintf(c, "* OK ready\r\n")
		io.Copy(io.Discard, c)
	}})
	for name, addr := range map[string]string{"down": downAddr, "stalled": stall.addr()} {
		t.Run(name, func(t *testing.T) {
			cfg := baseConfig(config.TLSNone, addr)
			cfg.Listen[0].AllowCleartextAuth = true
			cfg.Upstreams[0].CommandTimeout = config.Duration(300 * time.Millisecond)
			p := startProxy(t, cfg)
			c := dialText(t, p.addr, false)
			c.line()
			start := time.Now()
			c.send("a LOGIN alice alicepw\r\n")
			if l := c.line(); !strings.HasPrefix(l, "a NO [UNAVAILABLE]") {
				t.Fatalf("login: %q", l)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
}

func TestUpstreamRejectsPassword(t *testing.T) {
	upAddr, _ := startMemUpstream(t)
	cfg := baseConfig(config.TLSNone, upAddr)
	cfg.Listen[0].AllowCleartextAuth = true
	p := startProxy(t, cfg)
	c := dialText(t, p.addr, false)
	c.line()
	c.send("a LOGIN alice nope\r\n")
	if l := c.line(); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("login: %q", l)
	}
}

func TestProxyVerifiedUser(t *testing.T) {
	upAddr, _ := startMemUpstream(t)
	cfg := baseConfig(config.TLSNone, upAddr)
	cfg.Listen[0].AllowCleartextAuth = true
	// carol logs in to the proxy with her own password; the proxy logs in
	// to the upstream as alice with a stored secret.
	hash, err := auth.HashPassword("carolpw")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_ALICE_PW", "alicepw")
	cfg.Users = []config.User{{Name: "carol", PasswordHash: hash, Mode: config.ModeRoute, Upstream: "up",
		UpstreamUser: "alice", UpstreamPassword: config.Secret{Kind: config.SecretEnv, Ref: "TEST_ALICE_PW"}}}
	p := startProxy(t, cfg)
	c := dialText(t, p.addr, false)
	c.line()
	c.send("a LOGIN carol alicepw\r\n")
	if l := c.line(); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("wrong proxy password: %q", l)
	}
	c.send("b LOGIN carol carolpw\r\n")
	if l := c.line(); !strings.HasPrefix(l, "b OK [CAPABILITY") {
		t.Fatalf("login: %q", l)
	}
}
