package proxy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"imapproxy/config"
)

func TestGracefulShutdown(t *testing.T) {
	upAddr, _ := startMemUpstream(t)
	cfg := baseConfig(config.TLSNone, upAddr)
	cfg.Listen[0].AllowCleartextAuth = true
	p := startProxy(t, cfg)

	routed := dialText(t, p.addr, false)
	routed.line()
	routed.send("a LOGIN alice alicepw\r\n")
	routed.until("a OK")
	preauth := dialText(t, p.addr, false)
	preauth.line()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := p.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	for name, c := range map[string]*textClient{"routed": routed, "preauth": preauth} {
		lines := c.expectClosed()
		if len(lines) != 1 || lines[0] != "* BYE Server shutting down" {
			t.Errorf("%s session got %q", name, lines)
		}
	}
	if _, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
		t.Errorf("still accepting after Shutdown")
	}
}

func TestConnectionLimitPerIP(t *testing.T) {
	upAddr, _ := startMemUpstream(t)
	cfg := baseConfig(config.TLSNone, upAddr)
	cfg.Listen[0].AllowCleartextAuth = true
	cfg.Limits.MaxConnectionsPerIP = 2
	p := startProxy(t, cfg)
	for i := 0; i < 2; i++ {
		c := dialText(t, p.addr, false)
		if l := c.line(); !strings.HasPrefix(l, "* OK") {
			t.Fatalf("connection %d: %q", i, l)
		}
	}
	c := dialText(t, p.addr, false)
	lines := c.expectClosed()
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "* BYE [UNAVAILABLE]") {
		t.Fatalf("third connection got %q", lines)
	}
}

func TestIdleTimeouts(t *testing.T) {
	upAddr, _ := startMemUpstream(t)
	cfg := baseConfig(config.TLSNone, upAddr)
	cfg.Listen[0].AllowCleartextAuth = true
	cfg.Limits.PreAuthTimeout = config.Duration(200 * time.Millisecond)
	cfg.Limits.IdleTimeout = config.Duration(300 * time.Millisecond)
	p := startProxy(t, cfg)

	c := dialText(t, p.addr, false)
	c.line()
	if lines := c.expectClosed(); len(lines) != 1 || !strings.HasPrefix(lines[0], "* BYE Autologout") {
		t.Fatalf("pre-auth idle: %q", lines)
	}
	c = dialText(t, p.addr, false)
	c.line()
	c.send("a LOGIN alice alicepw\r\n")
	c.until("a OK")
	if lines := c.expectClosed(); len(lines) != 1 || !strings.HasPrefix(lines[0], "* BYE Autologout") {
		t.Fatalf("routed idle: %q", lines)
	}

	// A client in IDLE is not logged out while it waits.
	c = dialText(t, p.addr, false)
	c.line()
	c.send("a LOGIN alice alicepw\r\nb SELECT INBOX\r\n")
	c.until("b OK")
	c.send("c IDLE\r\n")
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	time.Sleep(800 * time.Millisecond) // well past the idle timeout
	c.send("DONE\r\n")
	c.until("c OK")
	if lines := c.expectClosed(); len(lines) != 1 || !strings.HasPrefix(lines[0], "* BYE Autologout") {
		t.Fatalf("idle after IDLE ended: %q", lines)
	}
}

func TestUpstreamByeEndsSession(t *testing.T) {
	f := startFake(t, &fakeUpstream{onConn: func(c net.Conn) {
		fmt.Fprintf(c, "* OK [CAPABILITY IMAP4rev1] hi\r\n")
		buf := make([]byte, 1024)
		n, _ := c.Read(buf)
		tag, _, _ := strings.Cut(string(buf[:n]), " ")
		fmt.Fprintf(c, "%s OK [CAPABILITY IMAP4rev1 IDLE] in\r\n", tag)
		c.Read(buf)
		fmt.Fprintf(c, "* BYE going down\r\n")
	}})
	cfg := baseConfig(config.TLSNone, f.addr())
	cfg.Listen[0].AllowCleartextAuth = true
	p := startProxy(t, cfg)
	c := dialText(t, p.addr, false)
	c.line()
	c.send("a LOGIN alice alicepw\r\n")
	c.until("a OK")
	c.send("b NOOP\r\n")
	if lines := c.expectClosed(); len(lines) != 1 || lines[0] != "* BYE going down" {
		t.Fatalf("got %q", lines)
	}
}

func TestProxyProtocol(t *testing.T) {
	f := startFake(t, &fakeUpstream{preCaps: "IMAP4rev1 ID"})
	cfg := baseConfig(config.TLSNone, f.addr())
	cfg.Listen[0].AllowCleartextAuth = true
	cfg.Listen[0].ProxyProtocol = true
	cfg.Listen[0].TrustedNets = mustPrefixes(t, "127.0.0.0/8")
	cfg.Upstreams[0].SendClientIP = true
	p := startProxy(t, cfg)

	header := &proxyproto.Header{
		Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
		SourceAddr:      &net.TCPAddr{IP: net.ParseIP("203.0.113.9"), Port: 40000},
		DestinationAddr: &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 993},
	}
	c := dialText(t, p.addr, false)
	if _, err := header.WriteTo(c.conn); err != nil {
		t.Fatal(err)
	}
	c.line()
	c.send("a LOGIN alice alicepw\r\n")
	c.until("a OK")
	f.mu.Lock()
	ids := append([]string(nil), f.ids...)
	f.mu.Unlock()
	if len(ids) != 1 || !strings.Contains(ids[0], `"x-originating-ip" "203.0.113.9"`) ||
		!strings.Contains(ids[0], `"x-originating-port" "40000"`) || !strings.Contains(ids[0], `"x-connected-ip" "198.51.100.1"`) {
		t.Fatalf("ID sent upstream: %q", ids)
	}

	// A trusted peer without a header is refused.
	c2 := dialText(t, p.addr, false)
	c2.send("a CAPABILITY\r\n")
	if lines := c2.expectClosed(); len(lines) != 0 {
		t.Fatalf("no header from a trusted peer: %q", lines)
	}
}

func TestProxyProtocolUntrustedPeer(t *testing.T) {
	upAddr, _ := startMemUpstream(t)
	cfg := baseConfig(config.TLSNone, upAddr)
	cfg.Listen[0].AllowCleartextAuth = true
	cfg.Listen[0].ProxyProtocol = true
	cfg.Listen[0].TrustedNets = mustPrefixes(t, "10.0.0.0/8")
	p := startProxy(t, cfg)

	// Without a header: served as itself.
	c := dialText(t, p.addr, false)
	if l := c.line(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("untrusted peer without header: %q", l)
	}
	// With a header: not believed; it is an unknown command.
	c2 := dialText(t, p.addr, false)
	c2.send("PROXY TCP4 203.0.113.9 198.51.100.1 40000 993\r\n")
	c2.line()
	if l := c2.line(); !strings.HasPrefix(l, "PROXY BAD") {
		t.Fatalf("untrusted peer with header: %q", l)
	}
	c2.send("a LOGIN alice alicepw\r\n")
	c2.until("a OK")
	if logs := p.logs.String(); strings.Contains(logs, "203.0.113.9") || !strings.Contains(logs, "msg=login remote=127.0.0.1:") {
		t.Errorf("header from an untrusted peer believed:\n%s", logs)
	}
}
