package proxy

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"imapproxy/config"
)

// TestHAProxyInFront puts a real HAProxy in front of the proxy, sending PROXY
// protocol v2 from 127.0.0.1. The client connects from 127.0.0.2, and that
// is the address the upstream must be told.
func TestHAProxyInFront(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("IMAPPROXY_TEST_DOVECOT") == "1" {
			t.Fatal("haproxy is required (Debian package haproxy)")
		}
		t.Skip("haproxy not installed (Debian package haproxy); skipping")
	}
	f := startFake(t, &fakeUpstream{preCaps: "IMAP4rev1 ID"})
	cfg := baseConfig(config.TLSNone, f.addr())
	cfg.Listen[0].AllowCleartextAuth = true
	cfg.Listen[0].ProxyProtocol = true
	cfg.Listen[0].TrustedNets = mustPrefixes(t, "127.0.0.1/32")
	cfg.Upstreams[0].SendClientIP = true
	p := startProxy(t, cfg)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	conf := fmt.Sprintf(`global
  log stderr format raw local0 err
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend imap
  bind %s
  default_backend proxy
backend proxy
  server p1 %s send-proxy-v2 source 127.0.0.1
`, front, p.addr)
	confPath := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(confPath, []byte(conf), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", confPath)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
	})

	var c net.Conn
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		c, err = d.Dial("tcp", front)
		if err == nil {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("haproxy did not listen: %v\n%s", err, out.String())
		}
	}
	tc := &textClient{t: t, conn: c}
	tc.br = newBufReader(c)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.Close()
	if l := tc.line(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting through haproxy: %q", l)
	}
	tc.send("a LOGIN alice alicepw\r\n")
	tc.until("a OK")
	f.mu.Lock()
	ids := append([]string(nil), f.ids...)
	f.mu.Unlock()
	if len(ids) != 1 || !strings.Contains(ids[0], `"x-originating-ip" "127.0.0.2"`) {
		t.Fatalf("upstream was told %q, want the client's 127.0.0.2", ids)
	}
}
