package merge

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"imapproxy/upstream"
)

// tLogWriter sends a Watch's log to t.Logf.
type tLogWriter struct{ t *testing.T }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimSpace(string(p)))
	return len(p), nil
}

// watchHarness runs one Watch against a memory upstream.
type watchHarness struct {
	t       *testing.T
	m       *memUpstream
	pool    *upstream.AccountPool
	w       *Watch
	changes chan struct{}
}

// startWatch starts a Watch of INBOX with o's Interval and NoIdle and
// waits until it has examined the mailbox (and, with IDLE, is idling).
func startWatch(t *testing.T, o WatchOptions) *watchHarness {
	t.Helper()
	h := &watchHarness{t: t, m: startMem(t), changes: make(chan struct{}, 100)}
	h.pool = upstream.NewAccountPool(h.m.account(), 2)
	o.Pool = h.pool
	o.Mailbox = "INBOX"
	o.OnChange = func() { h.changes <- struct{}{} }
	o.Logger = slog.New(slog.NewTextHandler(tLogWriter{t}, nil))
	h.w = StartWatch(context.Background(), o)
	t.Cleanup(func() {
		h.w.Stop()
		h.pool.Close()
	})
	want := "IDLE\r\n"
	if o.NoIdle {
		want = "NOOP\r\n"
	}
	h.waitSent("EXAMINE INBOX", want)
	return h
}

// waitSent waits until one connection has sent all of parts.
func (h *watchHarness) waitSent(parts ...string) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range h.m.sent() {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(s, p)
			}
			if all {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("no connection sent %q", parts)
}

// wantChange waits for OnChange.
func (h *watchHarness) wantChange(within time.Duration, what string) {
	h.t.Helper()
	select {
	case <-h.changes:
	case <-time.After(within):
		h.t.Fatalf("%s: no OnChange within %v", what, within)
	}
	// One change may be reported more than once (a STORE then EXPUNGE
	// gives FETCH and EXPUNGE, which may end two IDLEs); drain until
	// quiet.
	for {
		select {
		case <-h.changes:
		case <-time.After(300 * time.Millisecond):
			return
		}
	}
}

// wantQuiet checks that OnChange is not called for d.
func (h *watchHarness) wantQuiet(d time.Duration, what string) {
	h.t.Helper()
	select {
	case <-h.changes:
		h.t.Fatalf("%s: unexpected OnChange", what)
	case <-time.After(d):
	}
}

// stop stops the watch and checks that it was prompt.
func (h *watchHarness) stop() {
	h.t.Helper()
	start := time.Now()
	h.w.Stop()
	if d := time.Since(start); d > 2*time.Second {
		h.t.Errorf("Stop took %v", d)
	}
	h.w.Stop() // idempotent
}

// flag sets \Flagged on uid from another client.
func (h *watchHarness) flag(uid imap.UID) {
	h.m.admin("INBOX", func(ic *imapclient.Client) error {
		store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}, Silent: true}
		return ic.Store(imap.UIDSetNum(uid), store, nil).Close()
	})
}

func TestWatchIdle(t *testing.T) {
	// A long Interval: changes must come from IDLE, not re-issuing it.
	h := startWatch(t, WatchOptions{Interval: time.Minute})
	h.wantQuiet(300*time.Millisecond, "no change")

	uid := h.m.put("INBOX")
	h.wantChange(5*time.Second, "new message")
	h.flag(uid)
	h.wantChange(5*time.Second, "flag change")
	h.m.expunge("INBOX", uid)
	h.wantChange(5*time.Second, "expunge")
	h.wantQuiet(300*time.Millisecond, "after the expunge")
	h.stop()

	// The Client went back to the pool healthy, with IDLE ended.
	c, err := h.pool.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Noop(context.Background()); err != nil {
		t.Errorf("the watcher's client after Stop: %v", err)
	}
	h.pool.Put(c)
	for _, s := range h.m.sent() {
		if strings.Contains(s, "IDLE") && !strings.Contains(s, "DONE") {
			t.Errorf("IDLE not ended:\n%s", s)
		}
	}
}

func TestWatchReIdle(t *testing.T) {
	// IDLE is re-issued every Interval, and changes keep arriving.
	h := startWatch(t, WatchOptions{Interval: 100 * time.Millisecond})
	deadline := time.Now().Add(5 * time.Second)
	for n := 0; n < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("IDLE issued %d times in 5s", n)
		}
		time.Sleep(20 * time.Millisecond)
		for _, s := range h.m.sent() {
			n = max(n, strings.Count(s, "IDLE\r\n"))
		}
	}
	h.wantQuiet(0, "re-issuing IDLE")
	h.m.put("INBOX")
	h.wantChange(5*time.Second, "new message")
	h.stop()
}

func TestWatchPoll(t *testing.T) {
	const interval = 200 * time.Millisecond
	h := startWatch(t, WatchOptions{Interval: interval, NoIdle: true})
	h.wantQuiet(3*interval, "no change")

	uid := h.m.put("INBOX")
	h.wantChange(2*interval+time.Second, "new message")
	h.flag(uid)
	h.wantChange(2*interval+time.Second, "flag change")
	h.m.expunge("INBOX", uid)
	h.wantChange(2*interval+time.Second, "expunge")
	h.stop()
	for _, s := range h.m.sent() {
		if strings.Contains(s, "IDLE") {
			t.Errorf("IDLE sent in polling mode:\n%s", s)
		}
	}
}

func TestWatchReconnect(t *testing.T) {
	for _, noIdle := range []bool{false, true} {
		name := "idle"
		if noIdle {
			name = "poll"
		}
		t.Run(name, func(t *testing.T) {
			h := startWatch(t, WatchOptions{Interval: 200 * time.Millisecond, NoIdle: noIdle})
			h.m.kill()
			// 1s backoff, then a new connection and a report.
			h.wantChange(10*time.Second, "reconnect")
			h.wantQuiet(500*time.Millisecond, "after the reconnect")
			h.m.put("INBOX")
			h.wantChange(5*time.Second, "new message after the reconnect")
			h.stop()
		})
	}
}

func TestWatchStop(t *testing.T) {
	// Stop during the reconnection backoff.
	h := startWatch(t, WatchOptions{Interval: time.Minute})
	h.m.kill()
	time.Sleep(100 * time.Millisecond)
	h.stop()
	h.wantQuiet(0, "stopped")

	// The context ends the watch too.
	ctx, cancel := context.WithCancel(context.Background())
	w := StartWatch(ctx, WatchOptions{Pool: h.pool, Mailbox: "INBOX", OnChange: func() {}})
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case <-w.done:
	case <-time.After(2 * time.Second):
		t.Fatal("the watch did not end with its context")
	}
	w.Stop()

	// A missing mailbox is retried until Stop, without OnChange.
	w = StartWatch(context.Background(), WatchOptions{Pool: h.pool, Mailbox: "Nope", OnChange: func() { t.Error("OnChange") }})
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	w.Stop()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop took %v", d)
	}
}

// TestWatchOnReady checks that OnReady comes once the mailbox is selected,
// before any change, so that a caller can close the window between its
// first sync and the watch.
func TestWatchOnReady(t *testing.T) {
	ready := make(chan struct{}, 4)
	h := startWatch(t, WatchOptions{Interval: time.Minute, OnReady: func() { ready <- struct{}{} }})
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("OnReady not called after the first EXAMINE")
	}
	h.wantQuiet(300*time.Millisecond, "nothing changed")
	h.stop()
	if len(ready) != 0 {
		t.Fatalf("OnReady called %d more times without a reconnect", len(ready))
	}
}
