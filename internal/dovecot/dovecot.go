// Package dovecot starts real Dovecot 2.3 instances for tests and benchmarks.
//
// Each instance runs from a generated configuration in its own directory,
// with its own base_dir and state_dir, listening on two free loopback ports:
// one plaintext with STARTTLS and one implicit TLS. Nothing under /etc/dovecot
// is read. The instance runs in the foreground as a child of the test process
// and dies with it.
//
// When the test process runs as root (CI), Dovecot's master runs as root as
// usual, its internal services as the packaged dovecot and dovenull users,
// and the mail processes of every test user as nobody:nogroup, which owns the
// maildirs. Run as any other user, the whole instance runs as that user.
package dovecot

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"imapproxy/internal/selfsigned"
)

// EnvMandatory names the environment variable that, set to "1", turns a
// missing Dovecot from a skipped test into a failed one (CI sets it).
const EnvMandatory = "IMAPPROXY_TEST_DOVECOT"

// DefaultUsers are the test users an instance gets when Options.Users is
// empty.
var DefaultUsers = map[string]string{"alice": "alicepw", "bob": "bobpw"}

// Options configures an instance. The zero value is ready to use.
type Options struct {
	// Users maps user names to passwords. A password that starts with a
	// scheme such as "{PLAIN}" or "{SHA512-CRYPT}" is written as is,
	// anything else is taken as a plain password. Nil means DefaultUsers.
	Users map[string]string

	// ExtraConfig is appended verbatim to the generated dovecot.conf, so it
	// can add settings or override the generated ones (later wins).
	ExtraConfig string

	// StartTimeout bounds the wait for both listeners to greet. Zero means
	// 30 seconds.
	StartTimeout time.Duration
}

// Server is a running Dovecot instance.
type Server struct {
	// Dir holds the configuration, the certificate, the passwd-file, the
	// users' homes with their maildirs, state_dir and the logs.
	Dir string
	// ConfigFile is the generated configuration, for `doveadm -c`.
	ConfigFile string
	// BaseDir is Dovecot's base_dir (its sockets): Dir/run, or a short
	// directory under /tmp when Dir is too long for unix socket paths.
	BaseDir string
	// PlainAddr is the 127.0.0.1:port of the plaintext listener, which
	// offers STARTTLS and accepts cleartext logins.
	PlainAddr string
	// TLSAddr is the 127.0.0.1:port of the implicit TLS listener.
	TLSAddr string
	// CertPEM is the self-signed certificate both listeners serve, valid
	// for 127.0.0.1 and localhost.
	CertPEM []byte
	// LogFile is Dovecot's log_path and info_log_path.
	LogFile string
	// MailUID and MailGID own the maildirs and run the mail processes.
	MailUID, MailGID int
	// Users are the configured users and their passwords as given.
	Users map[string]string

	cmd         *exec.Cmd
	exited      chan struct{} // closed once the master process has been reaped
	waitErr     error         // the master's exit status, valid after exited
	ownBaseDir  bool          // BaseDir is a temporary directory outside Dir
	extraConfig string
	stopOnce    sync.Once
	stopErr     error

	deliverMu  sync.Mutex
	deliverSeq int64
	mailboxDir map[[2]string]string // (user, mailbox) → maildir
}

// Available reports whether the dovecot and doveadm binaries can be found.
func Available() bool {
	_, err1 := binary("dovecot")
	_, err2 := binary("doveadm")
	return err1 == nil && err2 == nil
}

// Require skips the test when Dovecot is not installed, or fails it when
// IMAPPROXY_TEST_DOVECOT=1 says Dovecot is mandatory.
func Require(t testing.TB) {
	t.Helper()
	if Available() {
		return
	}
	msg := "dovecot is not installed (Debian: apt-get install dovecot-imapd)"
	if os.Getenv(EnvMandatory) == "1" {
		t.Fatalf("%s, and %s=1 makes the Dovecot tests mandatory", msg, EnvMandatory)
	}
	t.Skipf("%s; skipping (set %s=1 to make this a failure)", msg, EnvMandatory)
}

// StartT starts an instance in a fresh t.TempDir and stops it when the test
// ends, logging the tail of Dovecot's log if the test failed.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	Require(t)
	s, err := Start(t.TempDir(), opts)
	if err != nil {
		t.Fatalf("start dovecot: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dovecot log tail (%s):\n%s", s.LogFile, s.LogTail(60))
		}
		if err := s.Stop(); err != nil {
			t.Errorf("stop dovecot: %v", err)
		}
	})
	return s
}

// Start writes a configuration into dir (which should be empty) and starts
// Dovecot from it, returning once both listeners greet. It retries with
// other ports when one was taken between choosing and binding it.
//
// As root, dir and its ancestors must be searchable by the dovecot and
// nobody users; Start adds o+x to dir and to its ancestors below the
// temporary directory (as t.TempDir creates them 0700), and fails otherwise.
func Start(dir string, opts Options) (*Server, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		s, err := start(dir, opts)
		if err == nil {
			return s, nil
		}
		if attempt >= 5 || !errors.Is(err, errAddrInUse) {
			return nil, err
		}
		// Clear what the failed attempt wrote; the next one starts afresh.
		if entries, rerr := os.ReadDir(dir); rerr == nil {
			for _, e := range entries {
				os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
	}
}

var errAddrInUse = errors.New("address already in use")

func start(dir string, opts Options) (*Server, error) {
	dovecotBin, err := binary("dovecot")
	if err != nil {
		return nil, err
	}
	if _, err := binary("doveadm"); err != nil {
		return nil, err
	}
	users := opts.Users
	if len(users) == 0 {
		users = DefaultUsers
	}
	ids, err := currentIdentities()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if ids.root {
		if err := makeSearchable(dir); err != nil {
			return nil, err
		}
	}
	pair, err := selfsigned.Generate("127.0.0.1", "localhost")
	if err != nil {
		return nil, fmt.Errorf("generate certificate: %w", err)
	}
	certFile, keyFile, err := pair.WriteFiles(dir)
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}

	s := &Server{
		Dir:         dir,
		ConfigFile:  filepath.Join(dir, "dovecot.conf"),
		BaseDir:     filepath.Join(dir, "run"),
		PlainAddr:   net.JoinHostPort("127.0.0.1", fmt.Sprint(ports[0])),
		TLSAddr:     net.JoinHostPort("127.0.0.1", fmt.Sprint(ports[1])),
		CertPEM:     pair.CertPEM,
		LogFile:     filepath.Join(dir, "dovecot.log"),
		MailUID:     ids.mailUID,
		MailGID:     ids.mailGID,
		Users:       make(map[string]string, len(users)),
		exited:      make(chan struct{}),
		mailboxDir:  make(map[[2]string]string),
		extraConfig: opts.ExtraConfig,
	}
	for u, p := range users {
		s.Users[u] = p
	}
	// Unix socket paths are limited to 108 bytes; base_dir's deepest socket
	// adds about 30 to it.
	if len(s.BaseDir) > 70 {
		short, err := os.MkdirTemp("/tmp", "dovecot-")
		if err != nil {
			return nil, err
		}
		s.BaseDir, s.ownBaseDir = short, true
	}
	if err := s.writeFiles(ids, ports, certFile, keyFile); err != nil {
		s.removeOwnBaseDir()
		return nil, err
	}
	raiseFileLimit()

	stderrFile, err := os.Create(filepath.Join(dir, "dovecot.stderr"))
	if err != nil {
		s.removeOwnBaseDir()
		return nil, err
	}
	defer stderrFile.Close() // the child has its own copy
	s.cmd = exec.Command(dovecotBin, "-F", "-c", s.ConfigFile)
	s.cmd.Dir = dir
	s.cmd.Stdout = stderrFile
	s.cmd.Stderr = stderrFile
	s.cmd.SysProcAttr = &syscall.SysProcAttr{
		// Dovecot dies with the test process. Its own process group lets
		// Stop find every process of this instance.
		Pdeathsig: syscall.SIGTERM,
		Setpgid:   true,
	}
	if err := s.run(); err != nil {
		s.removeOwnBaseDir()
		return nil, fmt.Errorf("start %s: %w", dovecotBin, err)
	}

	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if err := s.waitReady(timeout); err != nil {
		s.Stop()
		out, _ := os.ReadFile(stderrFile.Name())
		detail := fmt.Sprintf("%v\ndovecot stderr:\n%s\ndovecot log tail:\n%s", err, bytes.TrimSpace(out), s.LogTail(30))
		if bytes.Contains(out, []byte("Address already in use")) ||
			strings.Contains(s.LogTail(30), "Address already in use") {
			return nil, fmt.Errorf("%w: %s", errAddrInUse, detail)
		}
		return nil, errors.New(detail)
	}
	return s, nil
}

// run starts the master from a goroutine locked to its OS thread, because
// Pdeathsig fires when the thread that forked the child exits, and Go may
// otherwise retire that thread while Dovecot still runs.
func (s *Server) run() error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := s.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	return <-started
}

// waitReady waits until both listeners send an IMAP greeting.
func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	pool := s.CertPool()
	for _, l := range []struct {
		addr string
		tls  bool
	}{{s.PlainAddr, false}, {s.TLSAddr, true}} {
		var lastErr error
		for {
			select {
			case <-s.exited:
				return fmt.Errorf("dovecot exited during start-up: %v", s.waitErr)
			default:
			}
			if lastErr = greet(l.addr, l.tls, pool); lastErr == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("dovecot did not greet on %s within %v: %v", l.addr, timeout, lastErr)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

func greet(addr string, useTLS bool, pool *x509.CertPool) error {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if useTLS {
		tc := tls.Client(conn, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err := tc.Handshake(); err != nil {
			return err
		}
		conn = tc
	}
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if n >= 4 && string(buf[:4]) == "* OK" {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("unexpected greeting %q", buf[:n])
	}
	return err
}

// CertPool returns a pool that trusts the instance's certificate.
func (s *Server) CertPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CertPEM)
	return pool
}

// TLSConfig returns a client configuration that trusts the instance's
// certificate, for PlainAddr's STARTTLS or TLSAddr.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: s.CertPool(), ServerName: "127.0.0.1"}
}

// Doveadm runs `doveadm -c ConfigFile args...` and returns its standard
// output; the error carries standard error.
func (s *Server) Doveadm(args ...string) ([]byte, error) {
	bin, err := binary("doveadm")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append([]string{"-c", s.ConfigFile}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("doveadm %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// Who returns the output of `doveadm who`: logged-in users with the client
// IPs Dovecot believes.
func (s *Server) Who() (string, error) {
	out, err := s.Doveadm("who")
	return string(out), err
}

// LogTail returns the last n lines of Dovecot's log.
func (s *Server) LogTail(n int) string {
	data, err := os.ReadFile(s.LogFile)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// binary finds a Dovecot program on PATH or in /usr/sbin and /usr/bin,
// which a non-root PATH often lacks.
func binary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH or in /usr/sbin", name)
}

// freePorts picks n free loopback ports by binding and closing them.
// Another process may take one before Dovecot binds it; Start retries then.
func freePorts(n int) ([]int, error) {
	var ports []int
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// raiseFileLimit raises RLIMIT_NOFILE to its hard limit (as root, to at
// least 65536) for this process and therefore Dovecot, which needs an fd
// per client in its login processes. Calling syscall.Setrlimit also stops
// os/exec from restoring the original soft limit in children.
func raiseFileLimit() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	const want = 65536
	if lim.Max < want && os.Geteuid() == 0 {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			return
		}
	}
	lim.Cur = lim.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}
