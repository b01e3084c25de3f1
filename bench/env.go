package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"imapproxy/internal/dovecot"
	"imapproxy/internal/sample"
	"imapproxy/internal/selfsigned"
)

// Mailboxes and users the benchmarks use. alice is routed by the proxy to
// Dovecot's implicit TLS port, bob to its plaintext port.
const (
	userTLS     = "alice"
	passTLS     = "alicepw"
	userPlain   = "bob"
	passPlain   = "bobpw"
	bulkMailbox = "Bulk"
	// smallMessages is how many ~2 KB messages each user's INBOX holds.
	smallMessages = 200
)

// env is the benchmark environment: one Dovecot instance, the proxy binary
// running as a child process, and the addresses of both.
type env struct {
	dir  string
	dov  *dovecot.Server
	dov2 *dovecot.Server // the merge user's second account; nil without merge benchmarks

	proxyBin string
	proxyCfg string
	proxy    *proxyProc

	// clientTLS trusts both Dovecot's and the proxy's certificates.
	clientTLS *tls.Config

	directTLS   string // Dovecot, implicit TLS
	directPlain string // Dovecot, plaintext
	proxyTLS    string // proxy, implicit TLS listener
	proxyPlain  string // proxy, plaintext listener with cleartext auth
	adminAddr   string // proxy, /metrics

	bulkMessages int // messages in alice's Bulk mailbox
	bulkBytes    int64

	mergeBulkMessages int // messages in erin's Bulk mailbox on dov
	mergeBulkBytes    int64

	// argon2 are the cost parameters of the proxy users' password_hash.
	argon2 argon2Params
	// pool holds the TOTP users, enrolled on first use (totpPool).
	pool     *codePool
	poolErr  error
	poolOnce sync.Once

	mu          sync.Mutex // guards dov and proxy against a concurrent cleanup
	cleanupOnce sync.Once
}

// currentEnv is the environment being set up or used, for the signal
// handler's last-resort cleanup.
var currentEnv atomic.Pointer[env]

// setupEnv creates the temporary directory, starts Dovecot, fills the
// mailboxes, builds the proxy and starts it.
func setupEnv(ctx context.Context, o *options) (*env, error) {
	dir, err := os.MkdirTemp("", "imapproxy-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, argon2: o.argon2}
	currentEnv.Store(e)
	logf("temp dir %s", dir)

	// Build first: it is the slowest step, and it needs no Dovecot.
	if o.proxyBin != "" {
		if e.proxyBin, err = filepath.Abs(o.proxyBin); err != nil {
			return e, err
		}
	} else if err := e.buildProxy(ctx); err != nil {
		return e, err
	}
	if ctx.Err() != nil {
		return e, ctx.Err()
	}

	start := time.Now()
	users := map[string]string{
		userTLS: passTLS, userPlain: passPlain, userUpstream: passUpstream, userMergeUp: passMergeUp,
	}
	d, err := dovecot.Start(filepath.Join(dir, "dovecot"), dovecot.Options{Users: users})
	if err != nil {
		return e, fmt.Errorf("start dovecot: %w", err)
	}
	e.mu.Lock()
	e.dov = d
	e.mu.Unlock()
	e.directTLS, e.directPlain = d.TLSAddr, d.PlainAddr
	logf("dovecot up in %v (tls %s, plain %s)", time.Since(start).Round(time.Millisecond), d.TLSAddr, d.PlainAddr)

	if err := e.fillMailboxes(o); err != nil {
		return e, err
	}
	if o.mergeEnabled() {
		if err := e.startSecondDovecot(users); err != nil {
			return e, err
		}
		if err := e.fillMerge(o); err != nil {
			return e, err
		}
	}

	pair, err := selfsigned.Generate("127.0.0.1", "localhost")
	if err != nil {
		return e, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(d.CertPEM)
	pool.AppendCertsFromPEM(pair.CertPEM)
	if e.dov2 != nil {
		pool.AppendCertsFromPEM(e.dov2.CertPEM)
	}
	// No ClientSessionCache: every client connection makes a full
	// handshake, on both paths alike. X25519 only: Dovecot 2.3 (OpenSSL 3.0)
	// has no post-quantum key exchange, while Go's server would pick
	// X25519MLKEM768; the issue compares logins "with the same TLS".
	e.clientTLS = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", CurvePreferences: []tls.CurveID{tls.X25519}}

	if err := e.writeProxyConfig(pair, o); err != nil {
		return e, err
	}
	if err := e.startProxy(); err != nil {
		return e, err
	}
	return e, nil
}

// fillMailboxes writes the benchmark mail straight into the maildirs.
func (e *env) fillMailboxes(o *options) error {
	start := time.Now()
	small := sample.Generate(1, smallMessages, 2048)
	for _, u := range []string{userTLS, userPlain} {
		if err := e.dov.Deliver(u, "INBOX", small...); err != nil {
			return fmt.Errorf("deliver to %s: %w", u, err)
		}
	}
	if o.enabled("bulk") {
		size := o.bulkMsgKB * 1000
		n := max(1, int(int64(o.bulkMB)*1_000_000/int64(size)))
		// Generate in chunks so the whole mailbox is never in memory.
		const chunk = 100
		for i := 0; i < n; i += chunk {
			k := min(chunk, n-i)
			msgs := sample.Generate(int64(1000+i), k, size)
			for _, m := range msgs {
				e.bulkBytes += int64(len(m))
			}
			if err := e.dov.Deliver(userTLS, bulkMailbox, msgs...); err != nil {
				return fmt.Errorf("deliver bulk: %w", err)
			}
		}
		e.bulkMessages = n
	}
	logf("mail delivered in %v (bulk: %d messages, %.1f MB)", time.Since(start).Round(time.Millisecond),
		e.bulkMessages, float64(e.bulkBytes)/1e6)
	return nil
}

// buildProxy compiles ./cmd/imapproxy into the temporary directory. The
// bench is run from the module root or from bench/; go build finds the
// module either way when run in the directory holding go.mod.
func (e *env) buildProxy(ctx context.Context) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	e.proxyBin = filepath.Join(e.dir, "imapproxy")
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", e.proxyBin, "./cmd/imapproxy")
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ./cmd/imapproxy: %v\n%s", err, out)
	}
	logf("proxy built in %v", time.Since(start).Round(time.Millisecond))
	return nil
}

// moduleRoot finds the directory holding go.mod, from the working
// directory upwards.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found: run the bench from inside the imapproxy module")
		}
		dir = parent
	}
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// proxyEnv is the environment of the proxy and its admin verbs: this
// process's, plus alice's Dovecot password for upstream_password = "env:…".
func (e *env) proxyEnv() []string {
	return append(os.Environ(), upstreamPWEnv+"="+passTLS)
}

// writeProxyConfig writes the proxy's certificate, Dovecot's CA, a server
// key (imapproxy keygen) and the proxy configuration into the temporary
// directory.
func (e *env) writeProxyConfig(pair selfsigned.Pair, o *options) error {
	pdir := filepath.Join(e.dir, "proxy")
	if err := os.MkdirAll(filepath.Join(pdir, "state"), 0o700); err != nil {
		return err
	}
	certFile, keyFile, err := pair.WriteFiles(pdir)
	if err != nil {
		return err
	}
	caFile := filepath.Join(pdir, "dovecot-ca.pem")
	if err := os.WriteFile(caFile, e.dov.CertPEM, 0o644); err != nil {
		return err
	}
	if e.proxyTLS, err = freeAddr(); err != nil {
		return err
	}
	if e.proxyPlain, err = freeAddr(); err != nil {
		return err
	}
	if e.adminAddr, err = freeAddr(); err != nil {
		return err
	}
	var merge string
	if e.dov2 != nil {
		caFile2 := filepath.Join(pdir, "dovecot2-ca.pem")
		if err := os.WriteFile(caFile2, e.dov2.CertPEM, 0o644); err != nil {
			return err
		}
		merge = e.mergeConfig(caFile, caFile2)
	}
	sealKey := filepath.Join(pdir, "secret.key")
	if out, err := exec.Command(e.proxyBin, "keygen", "-out", sealKey).CombinedOutput(); err != nil {
		return fmt.Errorf("imapproxy keygen: %v\n%s", err, out)
	}
	hash, err := phcHash(proxyPass, e.argon2)
	if err != nil {
		return err
	}
	// The TOTP users, only when a benchmark uses them. They share one
	// hash (and salt): each login still computes it in full.
	var tfa strings.Builder
	if o.enabled("login2fa") || o.enabled("loginrate") {
		for i := 0; i < o.tfaUsers; i++ {
			fmt.Fprintf(&tfa, "\n[[user]]\nname = %q\npassword_hash = %q\nupstream = \"dovecot-tls\"\nupstream_user = %q\nupstream_password = \"env:%s\"\nrequire_2fa = true\n",
				tfaUserName(i), hash, userTLS, upstreamPWEnv)
		}
	}
	cfg := fmt.Sprintf(`# Generated by imapproxy/bench.
state_dir = %q

[log]
level = "warn"

[tls]
cert_file = %q
key_file = %q

[[listen]]
address = %q
tls = "implicit"

[[listen]]
address = %q
tls = "none"
allow_cleartext_auth = true

# Only read between measurements, for the memory breakdown.
[admin]
address = %q

[limits]
max_connections = 20000
max_connections_per_ip = 20000
shutdown_grace = "1s"

# TOTP secrets are sealed with this key.
[secrets]
key = "file:%s"

# No lockout during the login benchmarks (no login fails there anyway), and
# no TOTP grace: every 2FA login carries a fresh code.
[auth]
lockout_threshold = 1000000
totp_grace = "0s"

# Prepared connections: a login waits only for Dovecot's answer to LOGIN.
[[upstream]]
name = "dovecot-tls"
address = %q
tls = "implicit"
ca_file = %q
prepared_connections = 4

[[upstream]]
name = "dovecot-plain"
address = %q
tls = "none"
prepared_connections = 4

# No password_hash: Dovecot checks the password the client gives.
[[user]]
name = %q
upstream = "dovecot-tls"
upstream_password = "passthrough"

[[user]]
name = %q
upstream = "dovecot-plain"
upstream_password = "passthrough"

# The proxy checks the password (argon2id %s); Dovecot gets alice's
# password from the environment. No TOTP: the login cost without it.
[[user]]
name = %q
password_hash = %q
upstream = "dovecot-tls"
upstream_user = %q
upstream_password = "env:%s"

# Everyone else, carol among them: Dovecot checks the password.
[[route]]
match = "*"
upstream = "dovecot-tls"
verify = "upstream"

# Password + TOTP users: argon2id as above, and a TOTP enrolment each.
%s%s`, filepath.Join(pdir, "state"), certFile, keyFile, e.proxyTLS, e.proxyPlain, e.adminAddr,
		sealKey, e.dov.TLSAddr, caFile, e.dov.PlainAddr, userTLS, userPlain,
		e.argon2, userArgon, hash, userTLS, upstreamPWEnv, tfa.String(), merge)
	e.proxyCfg = filepath.Join(pdir, "config.toml")
	return os.WriteFile(e.proxyCfg, []byte(cfg), 0o600)
}

// startProxy starts the proxy binary and waits until it greets on both
// listeners.
func (e *env) startProxy() error {
	p, err := startProxyProc(e.proxyBin, e.proxyCfg, filepath.Join(e.dir, "proxy", "stderr.log"), e.proxyEnv())
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.proxy = p
	e.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := e.probe()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("proxy exited during start-up: %v\n%s", p.waitErr, p.stderrTail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("proxy did not greet within 20s: %v\n%s", err, p.stderrTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// probe checks that both proxy listeners answer with a greeting.
func (e *env) probe() error {
	for _, tc := range []*tls.Config{e.clientTLS, nil} {
		addr := e.proxyTLS
		if tc == nil {
			addr = e.proxyPlain
		}
		c, err := dialIMAP(context.Background(), addr, tc, 2*time.Second)
		if err != nil {
			return err
		}
		c.close()
	}
	return nil
}

// restartProxy stops the proxy and starts a fresh process, for
// measurements that need a clean heap.
func (e *env) restartProxy() error {
	if e.proxy != nil {
		e.proxy.stop()
	}
	return e.startProxy()
}

// cleanup stops the proxy and Dovecot and removes the temporary
// directory. It is safe to call more than once and from a signal handler.
func (e *env) cleanup(keep bool) {
	e.cleanupOnce.Do(func() {
		e.mu.Lock()
		p, d, d2 := e.proxy, e.dov, e.dov2
		e.mu.Unlock()
		if p != nil {
			p.stop()
		}
		for _, d := range []*dovecot.Server{d, d2} {
			if d == nil {
				continue
			}
			if err := d.Stop(); err != nil {
				logf("stop dovecot: %v", err)
			}
		}
		if keep {
			logf("kept %s", e.dir)
			return
		}
		if e.dir != "" {
			os.RemoveAll(e.dir)
		}
	})
}

// proxyProc is the proxy running as a child process.
type proxyProc struct {
	cmd     *exec.Cmd
	pid     int
	stderr  string
	exited  chan struct{}
	waitErr error
	once    sync.Once
}

// startProxyProc starts `bin serve -config cfg` with its output in
// stderrPath and environ as its environment. The child gets SIGKILL if this process dies unexpectedly;
// Pdeathsig is tied to the forking thread, so the fork happens on a
// goroutine that keeps its thread locked for the child's lifetime.
func startProxyProc(bin, cfg, stderrPath string, environ []string) (*proxyProc, error) {
	f, err := os.OpenFile(stderrPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p := &proxyProc{stderr: stderrPath, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve", "-config", cfg)
	p.cmd.Env = environ
	p.cmd.Stdout = f
	p.cmd.Stderr = f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := p.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start proxy: %w", err)
	}
	p.pid = p.cmd.Process.Pid
	return p, nil
}

// stop sends SIGTERM and waits; SIGKILL after 5 seconds.
func (p *proxyProc) stop() {
	p.once.Do(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// rssKiB reads VmRSS from /proc/PID/status.
func (p *proxyProc) rssKiB() (int64, error) {
	return procStatusKiB(p.pid, "VmRSS:")
}

// procStatusKiB reads one "Name:   N kB" field of /proc/PID/status.
func procStatusKiB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, field) {
			continue
		}
		f := strings.Fields(line[len(field):])
		if len(f) < 1 {
			break
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", field, pid)
}

// cpuTime is the user+system CPU time the process has used so far.
func (p *proxyProc) cpuTime() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ... field 14 utime, 15 stime (1-based), counted
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck
}

// stderrTail returns the end of the proxy's log.
func (p *proxyProc) stderrTail() string {
	b, _ := os.ReadFile(p.stderr)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// ioStats are a process's I/O counters from /proc/PID/io.
type ioStats struct {
	readCalls, writeCalls int64 // syscr, syscw: read and write system calls
	readBytes, writeBytes int64 // rchar, wchar
}

// sub returns s - o.
func (s ioStats) sub(o ioStats) ioStats {
	return ioStats{s.readCalls - o.readCalls, s.writeCalls - o.writeCalls,
		s.readBytes - o.readBytes, s.writeBytes - o.writeBytes}
}

// add returns s + o.
func (s ioStats) add(o ioStats) ioStats {
	return ioStats{s.readCalls + o.readCalls, s.writeCalls + o.writeCalls,
		s.readBytes + o.readBytes, s.writeBytes + o.writeBytes}
}

// io reads the proxy's I/O counters; zero if they cannot be read.
func (p *proxyProc) io() ioStats {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", p.pid))
	if err != nil {
		return ioStats{}
	}
	var s ioStats
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v, _ := strconv.ParseInt(strings.TrimSpace(val), 10, 64)
		switch name {
		case "syscr":
			s.readCalls = v
		case "syscw":
			s.writeCalls = v
		case "rchar":
			s.readBytes = v
		case "wchar":
			s.writeBytes = v
		}
	}
	return s
}
