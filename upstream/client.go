package upstream

// Merge mode keeps logged-in connections per upstream account and drives
// them with imapclient; unlike route mode's hand-written login phase,
// these connections are never handed over, so imapclient owning the
// connection is no loss. What imapclient lacks for a proxy (a bound on
// every command, a way out of a stalled Wait, XOAUTH2) is added here.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// AccountOptions say where and how a Client logs in.
type AccountOptions struct {
	// Options are the address, TLS mode and configuration, and timeouts.
	// CommandTimeout bounds every step of the login and every Do: a
	// command that moves no byte for that long is declared stalled.
	// SendClientIP is ignored: these connections serve no single client.
	Options
	// Credentials are the login; XOAUTH2 uses AUTHENTICATE XOAUTH2.
	Credentials
	// Unilateral, if set, receives the EXISTS, EXPUNGE, FETCH and mailbox
	// updates the upstream sends on its own, while idling or between and
	// during commands. The handlers run as imapclient runs them: Expunge
	// and Mailbox in its reader goroutine (they must not block, and must
	// not call the Client), Fetch in a goroutine of its own, so a FETCH
	// may be seen after an EXPUNGE that followed it. A Fetch handler need
	// not drain the message, and must not use it after returning: the
	// Client drains it then.
	Unilateral *imapclient.UnilateralDataHandler
	// KeepAlive is how long an AccountPool lets a Client sit idle before
	// it sends NOOP, which keeps upstreams from logging it out and finds
	// broken connections early. Zero means 5 minutes.
	KeepAlive time.Duration
}

// Client is one logged-in imapclient connection to an upstream account
// with a watchdog on every command. Its methods may be called from any
// goroutine; commands run one at a time.
type Client struct {
	opts   AccountOptions
	raw    *activityConn // below TLS; the watchdog closes it
	ic     *imapclient.Client
	caps   imap.CapSet // post-login, never modified
	delim  string
	prefix string

	handler atomic.Pointer[imapclient.UnilateralDataHandler]
	sem     chan struct{} // one Do at a time
	broken  atomic.Bool
	closing sync.Once
}

// DialClient connects to the upstream as o.TLS says (implicit TLS,
// STARTTLS, or cleartext), reads the greeting (BYE or PREAUTH is an
// error), logs in (LOGIN; AUTHENTICATE PLAIN when the upstream
// advertises LOGINDISABLED; AUTHENTICATE XOAUTH2 for XOAUTH2
// credentials), then learns the post-login capabilities with an explicit
// CAPABILITY command, and the hierarchy delimiter and personal namespace
// prefix with NAMESPACE when offered, else LIST "" "" (prefix "").
//
// Every step is bounded by o.CommandTimeout without progress (the TCP
// connect and TLS handshake by o.ConnectTimeout) and by ctx. Errors are
// *Error wrapping ErrAuthFailed (the upstream refused the credentials)
// or ErrUnavailable (everything else), as Dial and Login report them.
//
// The connection is dialled here rather than with imapclient's Dial*
// functions so that dialling follows ctx and the watchdog can close the
// connection below TLS and imapclient.
func DialClient(ctx context.Context, o AccountOptions) (*Client, error) {
	o.Options = o.Options.withDefaults()
	if o.KeepAlive <= 0 {
		o.KeepAlive = 5 * time.Minute
	}
	c := &Client{opts: o, sem: make(chan struct{}, 1)}
	c.handler.Store(o.Unilateral)
	if strings.ContainsRune(o.Username, 0) || strings.ContainsRune(o.Password, 0) {
		return nil, &Error{Upstream: o.Name, Op: "login", Err: fmt.Errorf("%w: credentials contain NUL", ErrAuthFailed)}
	}
	if err := c.connect(ctx); err != nil {
		return nil, err
	}
	if err := c.setup(ctx); err != nil {
		c.broken.Store(true)
		c.shutdown()
		return nil, err
	}
	return c, nil
}

// connect dials, secures the connection and starts imapclient on it.
func (c *Client) connect(ctx context.Context) error {
	o := c.opts
	dctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{
		Enable:   true,
		Idle:     30 * time.Second,
		Interval: 15 * time.Second,
		Count:    4,
	}}
	raw, err := d.DialContext(dctx, "tcp", o.Address)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return &Error{Upstream: o.Name, Op: "dial", Err: fmt.Errorf("%w: %w", ErrUnavailable, err)}
	}
	c.raw = &activityConn{Conn: raw}

	cfg := &tls.Config{}
	if o.TLSConfig != nil {
		cfg = o.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(o.Address)
		if err != nil {
			host = o.Address
		}
		cfg.ServerName = host
	}
	icOpts := &imapclient.Options{TLSConfig: cfg, UnilateralDataHandler: c.unilateral()}
	switch o.TLS {
	case TLSImplicit:
		if cfg.NextProtos == nil {
			cfg.NextProtos = []string{"imap"}
		}
		tc := tls.Client(c.raw, cfg)
		err = c.step(ctx, "tls", o.ConnectTimeout, func() error { return tc.HandshakeContext(ctx) })
		if err == nil {
			c.ic = imapclient.New(tc, icOpts)
		}
	case TLSStartTLS:
		err = c.step(ctx, "starttls", o.CommandTimeout, func() error {
			ic, err := imapclient.NewStartTLS(c.raw, icOpts)
			c.ic = ic
			return err
		})
	default:
		c.ic = imapclient.New(c.raw, icOpts)
	}
	if err != nil {
		c.raw.Close() // imapclient's reader, if any, ends with it
		return err
	}
	return nil
}

// setup reads the greeting, logs in and learns the account's layout.
func (c *Client) setup(ctx context.Context) error {
	ct := c.opts.CommandTimeout
	var pre imap.CapSet
	err := c.step(ctx, "greeting", ct, func() error {
		if err := waitGreeting(c.ic); err != nil {
			return err
		}
		if c.ic.State() != imap.ConnStateNotAuthenticated {
			return fmt.Errorf("%w: PREAUTH greeting: the upstream must ask for credentials", ErrUnavailable)
		}
		// The greeting's CAPABILITY code, else a CAPABILITY command
		// that imapclient sends itself.
		if pre = c.ic.Caps(); pre == nil {
			return errors.New("no capabilities")
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := c.login(ctx, pre); err != nil {
		return err
	}
	// imapclient resets its capabilities only after it has reported the
	// login's success, so Caps could still return the pre-login list:
	// ask explicitly.
	err = c.step(ctx, "capability", ct, func() error {
		caps, err := c.ic.Capability().Wait()
		if err == nil && len(caps) == 0 {
			err = errors.New("empty capability list")
		}
		c.caps = caps
		return err
	})
	if err != nil {
		return err
	}
	return c.step(ctx, "namespace", ct, c.learnNamespace)
}

// waitGreeting is imapclient's WaitGreeting, made to prefer the
// greeting's own error. A server that greets with BYE and closes the
// connection leaves imapclient both its greeting and its end ready, and
// WaitGreeting picks one of them at random; once either is ready,
// asking again costs nothing, so a few more tries find the BYE and its
// text when it came.
func waitGreeting(ic *imapclient.Client) error {
	err := ic.WaitGreeting()
	for try := 0; try < 32 && err != nil; try++ {
		if _, ok := errors.AsType[*imap.Error](err); ok {
			break
		}
		if again := ic.WaitGreeting(); again != nil {
			if _, ok := errors.AsType[*imap.Error](again); ok {
				err = again
			}
		}
	}
	return err
}

// login authenticates with the mechanism the capabilities call for.
func (c *Client) login(ctx context.Context, pre imap.CapSet) error {
	cr := c.opts.Credentials
	op, secrets := "login", []string{cr.Password}
	var mech sasl.Client
	switch {
	case cr.XOAUTH2:
		op = "xoauth2"
		if !pre.Has(imap.Cap("AUTH=XOAUTH2")) {
			return &Error{Upstream: c.opts.Name, Op: op, Err: fmt.Errorf("%w: upstream does not offer AUTH=XOAUTH2", ErrUnavailable)}
		}
		mech = &xoauth2Client{username: cr.Username, token: cr.Password}
	case pre.Has(imap.CapLoginDisabled):
		op = "authenticate"
		if !pre.Has(imap.Cap("AUTH=PLAIN")) {
			return &Error{Upstream: c.opts.Name, Op: op, Err: fmt.Errorf("%w: upstream has LOGINDISABLED and no AUTH=PLAIN", ErrUnavailable)}
		}
		mech = sasl.NewPlainClient("", cr.Username, cr.Password)
	}
	var refused *imap.Error
	var xerr *xoauth2Error
	err := c.step(ctx, op, c.opts.CommandTimeout, func() error {
		var err error
		if mech == nil {
			err = c.ic.Login(cr.Username, cr.Password).Wait()
		} else {
			err = c.ic.Authenticate(mech)
		}
		if errors.As(err, &xerr) {
			// The upstream waits for a response imapclient cannot
			// send; the connection is given up.
			c.raw.Close()
			return nil
		}
		if errors.As(err, &refused) {
			return nil // mapped below; the connection is in sync
		}
		return err
	})
	switch {
	case err != nil:
		return err
	case xerr != nil:
		return &Error{Upstream: c.opts.Name, Op: op, Text: xerr.challenge, Err: ErrAuthFailed}
	case refused != nil:
		e := &Error{Upstream: c.opts.Name, Op: op, Code: string(refused.Code), Text: redact(refused.Text, secrets...)}
		switch {
		case refused.Type == imap.StatusResponseTypeBad:
			e.Err = fmt.Errorf("%w: command rejected as BAD", ErrUnavailable)
		case refused.Type != imap.StatusResponseTypeNo,
			refused.Code == imap.ResponseCodeUnavailable, refused.Code == imap.ResponseCodeServerBug,
			refused.Code == imap.ResponseCodeInUse, refused.Code == imap.ResponseCodeLimit:
			e.Err = ErrUnavailable
		default:
			e.Err = ErrAuthFailed
		}
		return e
	}
	return nil
}

// learnNamespace sets delim and prefix.
func (c *Client) learnNamespace() error {
	if c.caps.Has(imap.CapNamespace) {
		ns, err := c.ic.Namespace().Wait()
		if err != nil {
			return err
		}
		if len(ns.Personal) > 0 {
			c.prefix = ns.Personal[0].Prefix
			if d := ns.Personal[0].Delim; d != 0 {
				c.delim = string(d)
			}
			return nil
		}
	}
	l, err := c.ic.List("", "", nil).Collect()
	if err != nil {
		return err
	}
	if len(l) > 0 && l[0].Delim != 0 {
		c.delim = string(l[0].Delim)
	}
	return nil
}

// Caps returns the upstream's post-login capabilities. The set must not
// be modified.
func (c *Client) Caps() imap.CapSet { return c.caps }

// Delimiter returns the hierarchy delimiter, "" if the upstream's
// mailbox names are flat.
func (c *Client) Delimiter() string { return c.delim }

// PersonalPrefix returns the prefix of the personal namespace, such as
// "INBOX." (Courier, Cyrus) or "".
func (c *Client) PersonalPrefix() string { return c.prefix }

// SetUnilateral replaces the handler for unilateral data (nil: none),
// for example for a watcher that owns the Client for a while. An
// AccountPool restores AccountOptions.Unilateral on Put.
func (c *Client) SetUnilateral(h *imapclient.UnilateralDataHandler) { c.handler.Store(h) }

// Do runs fn with the underlying imapclient.Client, one Do at a time per
// Client (waiting for the previous one as long as ctx allows).
//
// A watchdog closes the connection when no byte has moved on it for
// CommandTimeout, or when ctx ends, before fn returns; closing makes
// every pending imapclient call (Wait, Next, literal reads) return, fn's
// error is replaced by an *Error wrapping ErrUnavailable that says the
// command stalled (or ctx's error), and the Client is broken. A Client
// whose connection failed in any other way during fn is broken too, and
// then Do's error is an *Error wrapping ErrUnavailable. Refusals by the
// upstream (NO, BAD) come back as fn returned them, usually *imap.Error,
// and leave the Client usable.
//
// fn must drain every FetchCommand, ListCommand and ExpungeCommand it
// starts, or imapclient stops reading; and it must block on nothing but
// the connection, since closing the connection is how a stall ends.
func (c *Client) Do(ctx context.Context, fn func(*imapclient.Client) error) error {
	return c.do(ctx, "command", true, func(ic *imapclient.Client, _ *watchdog) error { return fn(ic) })
}

// do is Do with an operation name for errors, the watchdog for fn to
// pause, and, with kill false, a ctx that ends only the wait for the
// Client, not a command in progress.
func (c *Client) do(ctx context.Context, op string, kill bool, fn func(*imapclient.Client, *watchdog) error) error {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return &Error{Upstream: c.opts.Name, Op: op, Err: fmt.Errorf("%w: waiting for the connection: %w", ErrUnavailable, ctx.Err())}
	}
	defer func() { <-c.sem }()
	if c.Broken() {
		return &Error{Upstream: c.opts.Name, Op: op, Err: fmt.Errorf("%w: connection broken by an earlier failure", ErrUnavailable)}
	}
	wctx := ctx
	if !kill {
		wctx = context.WithoutCancel(ctx)
	}
	w := c.watch(wctx, c.opts.CommandTimeout)
	err := fn(c.ic, w)
	if stalled := w.stop(); stalled != nil {
		c.broken.Store(true)
		return &Error{Upstream: c.opts.Name, Op: op, Err: stalled}
	}
	if c.Broken() {
		c.broken.Store(true)
		if err == nil {
			err = errors.New("connection closed")
		}
		return &Error{Upstream: c.opts.Name, Op: op, Err: fmt.Errorf("%w: %w", ErrUnavailable, err)}
	}
	return err
}

// step runs fn, a step of DialClient, under the watchdog, and turns its
// failures into *Error wrapping ErrUnavailable.
func (c *Client) step(ctx context.Context, op string, timeout time.Duration, fn func() error) error {
	w := c.watch(ctx, timeout)
	err := fn()
	stalled := w.stop()
	var e *Error
	var ie *imap.Error
	switch {
	case stalled != nil:
		return &Error{Upstream: c.opts.Name, Op: op, Err: stalled}
	case err == nil:
		return nil
	case errors.As(err, &e):
		return e
	case errors.Is(err, ErrUnavailable):
		return &Error{Upstream: c.opts.Name, Op: op, Err: err}
	case errors.As(err, &ie):
		return &Error{Upstream: c.opts.Name, Op: op, Code: string(ie.Code), Text: ie.Text,
			Err: fmt.Errorf("%w: %s response", ErrUnavailable, ie.Type)}
	}
	return &Error{Upstream: c.opts.Name, Op: op, Err: fmt.Errorf("%w: %w", ErrUnavailable, err)}
}

// Broken reports whether the Client can no longer be used: a command
// stalled, the connection failed or was closed, or the upstream said BYE.
func (c *Client) Broken() bool {
	return c.broken.Load() || c.ic == nil || c.ic.State() == imap.ConnStateLogout
}

// Close logs out (briefly, if the Client is healthy and not in use) and
// closes the connection. It is idempotent and may be called while a Do
// runs, which then fails with ErrUnavailable.
func (c *Client) Close() error {
	c.closing.Do(func() {
		healthy := !c.Broken()
		c.broken.Store(true)
		if healthy {
			select {
			case c.sem <- struct{}{}:
				w := c.watch(context.Background(), min(c.opts.CommandTimeout, time.Second))
				c.ic.Logout().Wait()
				w.stop()
				<-c.sem
			default:
			}
		}
		c.shutdown()
	})
	return nil
}

// shutdown closes the connection and waits a little for imapclient's
// reader to end.
func (c *Client) shutdown() {
	c.raw.Close()
	if c.ic == nil {
		return
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-c.ic.Closed():
	case <-t.C:
	}
}

// unilateral returns the handler given to imapclient: it forwards to the
// current handler and drains FETCH data, which imapclient would otherwise
// wait on forever.
func (c *Client) unilateral() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) {
			if h := c.handler.Load(); h != nil && h.Expunge != nil {
				h.Expunge(seq)
			}
		},
		Mailbox: func(data *imapclient.UnilateralDataMailbox) {
			if h := c.handler.Load(); h != nil && h.Mailbox != nil {
				h.Mailbox(data)
			}
		},
		Fetch: func(msg *imapclient.FetchMessageData) {
			if h := c.handler.Load(); h != nil && h.Fetch != nil {
				h.Fetch(msg)
			}
			for msg.Next() != nil {
			}
		},
		Metadata: func(mailbox string, entries []string) {
			if h := c.handler.Load(); h != nil && h.Metadata != nil {
				h.Metadata(mailbox, entries)
			}
		},
	}
}

// xoauth2Client is the client side of Google's XOAUTH2 SASL mechanism,
// which go-sasl lacks.
type xoauth2Client struct{ username, token string }

// xoauth2Error is the upstream's error challenge: a JSON status.
type xoauth2Error struct{ challenge string }

func (e *xoauth2Error) Error() string { return "XOAUTH2 refused: " + e.challenge }

// Start returns the initial response: user, bearer token.
func (x *xoauth2Client) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + x.username + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

// Next is called only with the error challenge. The mechanism wants an
// empty line in reply, which imapclient cannot send (it sends "="), so
// the exchange ends here with the challenge as the error.
func (x *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	return nil, &xoauth2Error{challenge: string(challenge)}
}

// activityConn records when bytes last moved, for the watchdog.
type activityConn struct {
	net.Conn
	last atomic.Int64 // UnixNano
}

func (c *activityConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (c *activityConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// watchdog closes a Client's connection when no byte moved on it for a
// timeout, or when a context ends, and remembers why.
type watchdog struct {
	conn    *activityConn
	timeout time.Duration
	timer   *time.Timer
	stopCtx func() bool

	mu     sync.Mutex
	start  time.Time // progress before it does not count
	paused bool
	done   bool
	err    error
}

func (c *Client) watch(ctx context.Context, timeout time.Duration) *watchdog {
	w := &watchdog{conn: c.raw, timeout: timeout, start: time.Now()}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer = time.AfterFunc(timeout, w.check)
	w.stopCtx = context.AfterFunc(ctx, func() {
		w.fire(fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err()))
	})
	return w
}

// check runs when the timer expires: recent progress rearms it for the
// rest of the timeout, none fires.
func (w *watchdog) check() {
	w.mu.Lock()
	if w.done || w.paused {
		w.mu.Unlock()
		return
	}
	since := w.start
	if last := time.Unix(0, w.conn.last.Load()); last.After(since) {
		since = last
	}
	if quiet := time.Since(since); quiet < w.timeout {
		w.timer.Reset(w.timeout - quiet)
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	w.fire(fmt.Errorf("%w: stalled: no answer within %v", ErrUnavailable, w.timeout.Round(time.Millisecond)))
}

func (w *watchdog) fire(err error) {
	w.mu.Lock()
	if w.done || w.err != nil {
		w.mu.Unlock()
		return
	}
	w.err = err
	w.mu.Unlock()
	w.conn.Close()
}

// pause suspends the timeout (not the context) while waiting for
// nothing in particular, as in IDLE.
func (w *watchdog) pause() {
	w.mu.Lock()
	w.paused = true
	w.timer.Stop()
	w.mu.Unlock()
}

// resume restarts the timeout after pause.
func (w *watchdog) resume() {
	w.mu.Lock()
	w.paused = false
	w.start = time.Now()
	w.timer.Reset(w.timeout)
	w.mu.Unlock()
}

// stop ends the watch and returns why it fired, or nil.
func (w *watchdog) stop() error {
	w.mu.Lock()
	w.done = true
	w.timer.Stop()
	err := w.err
	w.mu.Unlock()
	w.stopCtx()
	return err
}
