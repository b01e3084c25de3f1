package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"imapproxy/config"
	"imapproxy/internal/selfsigned"
)

// TestServeAdminAndCertReload runs a configured instance: /healthz and
// /metrics answer, and a reloaded certificate is served to new connections
// while an open session keeps working.
func TestServeAdminAndCertReload(t *testing.T) {
	up, err := startDemoUpstream()
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	dir := t.TempDir()
	pairA, _ := selfsigned.Generate("127.0.0.1")
	pairB, _ := selfsigned.Generate("127.0.0.1")
	certFile, keyFile, err := pairA.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfgText := fmt.Sprintf(`
state_dir = %q
[tls]
cert_file = %q
key_file = %q
[[listen]]
address = "127.0.0.1:0"
tls = "implicit"
[admin]
address = "127.0.0.1:0"
[[upstream]]
name = "mem"
address = %q
tls = "none"
[[route]]
match = "*"
upstream = "mem"
`, dir, certFile, keyFile, up.Addr().String())
	path := filepath.Join(dir, "config.toml")
	os.WriteFile(path, []byte(cfgText), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	in, err := startInstance(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		in.shutdown(ctx)
	}()
	addr := in.proxy.Addrs()[0].String()

	dialWith := func(pair selfsigned.Pair) (*tls.Conn, *bufio.Reader, error) {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pair.CertPool(), ServerName: "127.0.0.1"})
		if err != nil {
			return nil, nil, err
		}
		br := bufio.NewReader(c)
		_, err = br.ReadString('\n')
		return c, br, err
	}
	old, oldR, err := dialWith(pairA)
	if err != nil {
		t.Fatalf("certificate A: %v", err)
	}
	defer old.Close()
	fmt.Fprintf(old, "a LOGIN demo demo\r\n")
	if l, _ := oldR.ReadString('\n'); !strings.HasPrefix(l, "a OK") {
		t.Fatalf("login: %q", l)
	}

	if _, _, err := pairB.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	in.reload()
	if _, _, err := dialWith(pairA); err == nil {
		t.Fatalf("old certificate still served after reload")
	}
	c, _, err := dialWith(pairB)
	if err != nil {
		t.Fatalf("new certificate not served: %v", err)
	}
	c.Close()
	fmt.Fprintf(old, "b SELECT INBOX\r\n")
	for {
		l, err := oldR.ReadString('\n')
		if err != nil {
			t.Fatalf("open session broken by reload: %v", err)
		}
		if strings.HasPrefix(l, "b ") {
			if !strings.HasPrefix(l, "b OK") {
				t.Fatalf("SELECT: %q", l)
			}
			break
		}
	}

	get := func(p string) string {
		resp, err := http.Get("http://" + in.adminAddr.String() + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if h := get("/healthz"); h != "ok\n" {
		t.Errorf("/healthz = %q", h)
	}
	m := get("/metrics")
	for _, want := range []string{`imapproxy_logins_total{result="ok"} 1`, `imapproxy_sessions_active{mode="route"} 1`,
		`imapproxy_upstream_login_seconds_count{upstream="mem"} 1`, `imapproxy_relayed_bytes_total{direction="to_client",upstream="mem"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
