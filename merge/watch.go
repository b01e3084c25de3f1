package merge

// This file watches one source (an account's upstream mailbox) for
// changes: one connection per source, in IDLE where the upstream offers
// it, else polled with NOOP, reconnecting with backoff when it breaks.
// The watcher only says that something changed; the hub then syncs the
// source (SyncSource) to learn what.

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"imapproxy/upstream"
)

// Watch timing bounds.
const (
	// defaultWatchInterval is WatchOptions.Interval's default.
	defaultWatchInterval = 5 * time.Second
	// maxIdle is the longest IDLE before it is re-issued: RFC 9051 has
	// servers end IDLE after 30 minutes without activity.
	maxIdle = 25 * time.Minute
	// Reconnection backoff after a broken connection or a failed Get or
	// SELECT.
	minWatchBackoff = time.Second
	maxWatchBackoff = 30 * time.Second
)

// WatchOptions configure a Watch.
type WatchOptions struct {
	// Pool is the account's pool; the watcher holds one Client from it
	// while it runs.
	Pool *upstream.AccountPool
	// Mailbox is the upstream mailbox watched (EXAMINEd, so read-only).
	Mailbox string
	// Interval is the NOOP polling interval when the upstream lacks IDLE
	// (or NoIdle is set), and also the longest IDLE before it is
	// re-issued (capped at 25 minutes). Zero means 5s.
	Interval time.Duration
	// NoIdle forces NOOP polling even where the upstream offers IDLE
	// (tests, or upstreams whose IDLE misbehaves).
	NoIdle bool
	// OnChange is called when the upstream reported EXISTS, EXPUNGE or
	// FETCH (flags) for the mailbox, and after every reconnect, since
	// changes may have been missed meanwhile. It is called from the
	// watcher's goroutine, never concurrently with itself, and never after
	// Stop has returned; while it runs the watcher waits, so it should
	// hand the work on rather than sync for long. It is not called for
	// the first connection: start the watch before the first sync so that
	// nothing falls between them. It may be nil.
	//
	// VANISHED is never seen: imapclient does not parse it, and the
	// watcher does not enable QRESYNC.
	OnChange func()
	// OnReady, if set, is called like OnChange each time the mailbox has
	// been selected and watching begins, the first time included. A caller
	// that synced before the watch was ready re-syncs here, so that no
	// change falls between its sync and the watch.
	OnReady func()
	// Logger gets reconnects and failures; nil discards them.
	Logger *slog.Logger
}

// Watch is a running watcher of one source. Its goroutine runs from
// StartWatch until Stop or until StartWatch's context ends.
type Watch struct {
	o      WatchOptions
	cancel context.CancelFunc
	done   chan struct{}

	changed atomic.Bool // the upstream reported something since the last OnChange
	// liveSince is when the current IDLE session began (UnixNano; 0
	// when not in an IDLE session): from then on a change is reported
	// within moments.
	liveSince atomic.Int64
	mu        sync.Mutex
	wake      context.CancelFunc // ends the current IDLE early; nil outside IDLE
}

// StartWatch starts watching o.Mailbox on a Client of o.Pool and returns
// at once. Call Stop when done.
func StartWatch(ctx context.Context, o WatchOptions) *Watch {
	if o.Interval <= 0 {
		o.Interval = defaultWatchInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Logger = o.Logger.With("mailbox", o.Mailbox)
	ctx, cancel := context.WithCancel(ctx)
	w := &Watch{o: o, cancel: cancel, done: make(chan struct{})}
	go w.run(ctx)
	return w
}

// Stop ends the watcher, returns its Client to the pool and waits for its
// goroutine to end. An IDLE in progress is ended with DONE, so the Client
// normally goes back healthy. Stop may be called more than once.
func (w *Watch) Stop() {
	w.cancel()
	<-w.done
}

// LiveSince returns when the watcher's current IDLE session began (its
// mailbox selected, OnReady called), or the zero time when it is not
// idling (starting, reconnecting, or polling with NOOP). While live, the
// upstream's changes reach OnChange within moments.
func (w *Watch) LiveSince() time.Time {
	n := w.liveSince.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// run is the watcher's goroutine: one session per connection, with
// backoff between them.
func (w *Watch) run(ctx context.Context) {
	defer close(w.done)
	backoff := time.Duration(0)
	reconnect := false
	for {
		selected, err := w.session(ctx, reconnect)
		if ctx.Err() != nil {
			return
		}
		if selected {
			backoff = 0
			reconnect = true
		}
		backoff = min(max(2*backoff, minWatchBackoff), maxWatchBackoff)
		if selected {
			w.o.Logger.Warn("watcher: upstream connection lost, reconnecting", "err", err, "backoff", backoff)
		} else {
			w.o.Logger.Warn("watcher: cannot watch the mailbox, retrying", "err", err, "backoff", backoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// session gets a Client, selects the mailbox and watches it until ctx
// ends or something fails, and puts the Client back. selected says that
// the mailbox was selected, so that changes may have been missed once
// the session ended (and the backoff starts over). With reconnect,
// OnChange is called once the mailbox is selected.
func (w *Watch) session(ctx context.Context, reconnect bool) (selected bool, err error) {
	c, err := w.o.Pool.Get(ctx)
	if err != nil {
		return false, err
	}
	defer w.o.Pool.Put(c) // restores the pool's handler too
	w.changed.Store(false)
	c.SetUnilateral(w.handler())
	if _, err := c.Select(ctx, w.o.Mailbox, true); err != nil {
		return false, err
	}
	if reconnect {
		w.o.Logger.Info("watcher: reconnected")
		w.changed.Store(true) // report at once, below
	}
	idle := !w.o.NoIdle && c.Caps().Has(imap.CapIdle)
	if idle {
		// Live from here: the handler records every change since the
		// EXAMINE, and idle reports them.
		w.liveSince.Store(time.Now().UnixNano())
		defer w.liveSince.Store(0)
	}
	if w.o.OnReady != nil && ctx.Err() == nil {
		w.o.OnReady()
	}
	if !idle {
		return true, w.poll(ctx, c)
	}
	return true, w.idle(ctx, c)
}

// handler returns the unilateral data handler that records changes. It
// runs in imapclient's goroutines (and may run late, after the Client
// went back to the pool), so it only sets a flag and wakes the IDLE.
func (w *Watch) handler() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Expunge: func(uint32) { w.note() },
		Mailbox: func(data *imapclient.UnilateralDataMailbox) {
			if data.NumMessages != nil {
				w.note()
			}
		},
		Fetch: func(*imapclient.FetchMessageData) { w.note() },
	}
}

// note records a change and ends the current IDLE, if any.
func (w *Watch) note() {
	w.changed.Store(true)
	w.mu.Lock()
	if w.wake != nil {
		w.wake()
	}
	w.mu.Unlock()
}

// report calls OnChange if a change was recorded since the last call.
func (w *Watch) report(ctx context.Context) {
	if w.changed.Swap(false) && ctx.Err() == nil && w.o.OnChange != nil {
		w.o.OnChange()
	}
}

// idle re-issues IDLE until ctx ends or the Client fails, reporting the
// changes that end it.
func (w *Watch) idle(ctx context.Context, c *upstream.Client) error {
	max := min(w.o.Interval, maxIdle)
	for {
		w.report(ctx)
		if ctx.Err() != nil {
			return nil
		}
		ictx, cancel := context.WithCancel(ctx)
		w.mu.Lock()
		w.wake = cancel
		w.mu.Unlock()
		if w.changed.Load() {
			cancel() // arrived before wake was set: a short IDLE
		}
		err := c.Idle(ictx, max)
		w.mu.Lock()
		w.wake = nil
		w.mu.Unlock()
		cancel()
		if err != nil {
			return err
		}
	}
}

// poll sends NOOP every Interval until ctx ends or the Client fails,
// reporting what the answers carried.
func (w *Watch) poll(ctx context.Context, c *upstream.Client) error {
	t := time.NewTicker(w.o.Interval)
	defer t.Stop()
	for {
		w.report(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := c.Noop(ctx); err != nil {
			return err
		}
	}
}
