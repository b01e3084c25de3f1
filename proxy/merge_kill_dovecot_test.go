package proxy

// Cross-account MOVEs of a merged account interrupted by a crash, against
// two real Dovecot 2.3 instances: the target Dovecot killed, or the proxy
// process itself killed with SIGKILL, at random points of a UID MOVE,
// many times. After each restart and recovery the two mailboxes together
// hold every message exactly once; at the end the target has them all
// and the journal has nothing unfinished.

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"imapproxy/config"
	"imapproxy/internal/dovecot"
	"imapproxy/store"
)

// victim is what a kill test does to the proxy and the upstreams.
type victim struct {
	// start starts a proxy on the state at dbPath and returns a logged-in
	// client of alice and a function that stops the proxy (idempotent).
	start func(dbPath string) (*imapclient.Client, func())
	// kill kills whatever the test kills, in the middle of a MOVE.
	kill func() error
	// revive, if not nil, brings it back once the proxy is stopped.
	revive func() error
}

// killEnv is two Dovecots with 200 messages in work's Crash, to be moved
// to home's Crash.
type killEnv struct {
	work, home *dovecot.Server
	homeDir    string // home's Crash maildir
	want       map[string]directMessage
	rng        *rand.Rand
}

func newKillEnv(t *testing.T) *killEnv {
	e := &killEnv{work: dovecot.StartT(t, dovecot.Options{}), home: dovecot.StartT(t, dovecot.Options{})}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("IMAPPROXY_TEST_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (IMAPPROXY_TEST_SEED repeats it)", seed)
	e.rng = rand.New(rand.NewPCG(seed, 6))
	if err := e.work.DeliverMessages("alice", "Crash", transferMessages(e.rng, "crash", 200, 64<<10)...); err != nil {
		t.Fatal(err)
	}
	if err := e.home.DeliverMessages("alice", "Crash"); err != nil {
		t.Fatal(err)
	}
	out, err := e.home.Doveadm("mailbox", "path", "-u", "alice", "Crash")
	if err != nil {
		t.Fatal(err)
	}
	e.homeDir = strings.TrimSpace(string(out))
	e.want = single(t, directState(t, e.work, "Crash"))
	return e
}

// run moves Work/Crash to Home/Crash through proxies v starts, killing
// at a random point of each MOVE but the last, and checks after each
// restart that nothing was lost or duplicated.
func (e *killEnv) run(t *testing.T, v victim) {
	dbPath := filepath.Join(t.TempDir(), "state.db")
	const rounds = 3
	for round := 0; round <= rounds; round++ {
		// A new proxy on the same state: the user's hub recovers the
		// unfinished transfers when it starts, at the login.
		c, stop := v.start(dbPath)
		// Recovery may have to wait for a restarted Dovecot and retry.
		// A kill between the creation of dovecot-uidlist.lock and the
		// write of its PID leaves an empty dotlock, which Dovecot only
		// takes as stale when it is two minutes old: until then every
		// SELECT of the folder stalls (the proxy's watchdog cuts it at
		// 20s and recovery retries with backoff). Most rounds settle in
		// about a second; the window covers the two minutes and a retry.
		started := time.Now()
		const window = 4 * time.Minute
		var d string
		for {
			d = exactlyOnce(e.want, directState(t, e.work, "Crash"), directState(t, e.home, "Crash"))
			if d == "" || time.Since(started) > window {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if d != "" {
			t.Fatalf("round %d, %v after the proxy restarted: %s", round, window, d)
		}
		t.Logf("round %d: consistent %v after the proxy restarted", round, time.Since(started).Round(time.Millisecond))
		sd, err := c.Select("Work/Crash", nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if round == rounds || sd.NumMessages == 0 {
			// The last round moves the rest undisturbed.
			if sd.NumMessages > 0 {
				if _, err := c.Move(imap.UIDSet{{Start: 1, Stop: 0}}, "Home/Crash").Wait(); err != nil {
					t.Fatalf("final UID MOVE: %v", err)
				}
			}
			c.Logout().Wait()
			stop()
			break
		}
		// Kill once the target has a few more messages.
		have := countFiles(e.homeDir)
		kill := have + 1 + e.rng.IntN(max(1, min(40, int(sd.NumMessages)-1)))
		done := make(chan error, 1)
		go func() {
			_, err := c.Move(imap.UIDSet{{Start: 1, Stop: 0}}, "Home/Crash").Wait()
			done <- err
		}()
		var moveErr error
		finished := false
	wait:
		for {
			select {
			case moveErr = <-done:
				finished = true
				break wait
			case <-time.After(2 * time.Millisecond):
				if countFiles(e.homeDir) >= kill {
					break wait
				}
			}
		}
		if err := v.kill(); err != nil {
			t.Fatal(err)
		}
		if !finished {
			moveErr = <-done
		}
		t.Logf("round %d: killed at %d messages in the target (asked for %d of 200); the MOVE returned %v",
			round, countFiles(e.homeDir), kill, moveErr)
		c.Close()
		stop()
		if v.revive != nil {
			if err := v.revive(); err != nil {
				t.Fatal(err)
			}
		}
	}

	if d := exactlyOnce(e.want, directState(t, e.home, "Crash")); d != "" {
		t.Errorf("home's Crash at the end: %s", d)
	}
	if left := directState(t, e.work, "Crash"); len(left) != 0 {
		t.Errorf("work's Crash at the end holds %d messages", len(left))
	}
	st, err := store.OpenSQLite(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rows, err := st.ListTransfers(context.Background(), "alice", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 0 {
		t.Errorf("%d transfers unfinished at the end: %+v", len(rows), rows)
	}
}

// TestMergeTransferDovecotKillTarget kills the target Dovecot in the
// middle of cross-account UID MOVEs; each time it is restarted (same
// directory and ports) and a new proxy on the same state recovers.
func TestMergeTransferDovecotKillTarget(t *testing.T) {
	e := newKillEnv(t)
	cfg := mergeDovecotConfig(t, e.work, e.home)
	e.run(t, victim{
		start: func(dbPath string) (*imapclient.Client, func()) {
			p := startMergeProxyAt(t, cfg, dbPath)
			return dialMerged(t, p.addr, nil), p.stop
		},
		kill:   e.home.Kill,
		revive: e.home.Restart,
	})
}

// proxyHelperEnv holds, in the helper process of
// TestMergeTransferDovecotKillProxy, what it serves (proxyHelperSpec as
// JSON).
const proxyHelperEnv = "IMAPPROXY_PROXY_HELPER"

// proxyHelperSpec is the helper's merged account and state.
type proxyHelperSpec struct {
	Work dovecotUpstream `json:"work"`
	Home dovecotUpstream `json:"home"`
	DB   string          `json:"db"`
}

// TestMergeProxyHelper is the helper process of
// TestMergeTransferDovecotKillProxy: a proxy (plaintext listener) for
// the merged account of the spec in its environment, which prints its
// address and serves until it is killed.
func TestMergeProxyHelper(t *testing.T) {
	raw := os.Getenv(proxyHelperEnv)
	if raw == "" {
		t.Skip("the helper process of TestMergeTransferDovecotKillProxy")
	}
	var spec proxyHelperSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	cfg := mergeConfigFor(spec.Work, spec.Home)
	cfg.Listen[0].TLS, cfg.Listen[0].AllowCleartextAuth = config.TLSNone, true
	p := startMergeProxyAt(t, cfg, spec.DB)
	os.Stdout.WriteString("proxy at " + p.addr + "\n")
	io.Copy(io.Discard, os.Stdin) // until the parent kills us
}

// TestMergeTransferDovecotKillProxy kills the proxy process (SIGKILL: no
// shutdown, the store as the kill left it) in the middle of cross-account
// UID MOVEs; each time a new process on the same state recovers.
func TestMergeTransferDovecotKillProxy(t *testing.T) {
	e := newKillEnv(t)
	work, home := upstreamFor(t, "work", e.work), upstreamFor(t, "home", e.home)
	var (
		mu  sync.Mutex
		cmd *exec.Cmd
	)
	e.run(t, victim{
		start: func(dbPath string) (*imapclient.Client, func()) {
			spec, err := json.Marshal(proxyHelperSpec{Work: work, Home: home, DB: dbPath})
			if err != nil {
				t.Fatal(err)
			}
			c, addr := startProxyHelper(t, string(spec))
			mu.Lock()
			cmd = c
			mu.Unlock()
			ic, err := imapclient.DialInsecure(addr, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ic.Close() })
			if err := ic.Login("alice", "alicepw").Wait(); err != nil {
				t.Fatalf("LOGIN through the proxy: %v", err)
			}
			return ic, func() { stopProxyHelper(c) }
		},
		kill: func() error {
			mu.Lock()
			defer mu.Unlock()
			return cmd.Process.Signal(syscall.SIGKILL)
		},
	})
}

// startProxyHelper starts TestMergeProxyHelper in a process of its own
// and returns it and the proxy's address. The process is killed at the
// end of the test if still running, and its output logged if the test
// failed.
func startProxyHelper(t *testing.T, spec string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMergeProxyHelper$", "-test.v")
	// The helper cannot clean up after itself: its files go into ours.
	cmd.Env = append(os.Environ(), proxyHelperEnv+"="+spec, "TMPDIR="+t.TempDir())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	read := make(chan struct{})
	var lines []string // the last ones, for a failure
	go func() {
		defer close(read)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "proxy at "); ok {
				addr <- a
			}
			lines = append(lines, sc.Text())
			if len(lines) > 200 {
				lines = lines[100:]
			}
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		stopProxyHelper(cmd)
		<-read
		if t.Failed() {
			t.Logf("proxy helper %d, last lines:\n%s", cmd.Process.Pid, strings.Join(lines, "\n"))
		}
	})
	select {
	case a := <-addr:
		return cmd, a
	case <-time.After(30 * time.Second):
		t.Fatal("the proxy helper did not start within 30s")
	}
	return nil, ""
}

// stopProxyHelper kills the helper process, if it still runs, and waits
// for it.
func stopProxyHelper(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
}
