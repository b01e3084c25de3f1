package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"imapproxy/internal/readahead"
)

// TLSMode says how the connection to the upstream is secured.
type TLSMode int

const (
	// TLSImplicit starts TLS right after connecting (port 993). It is the
	// zero value.
	TLSImplicit TLSMode = iota
	// TLSStartTLS connects in cleartext and upgrades with STARTTLS before
	// anything else; a refusal is an error, never a fallback to cleartext.
	TLSStartTLS
	// TLSNone uses cleartext throughout.
	TLSNone
)

// String returns "implicit", "starttls" or "none".
func (m TLSMode) String() string {
	switch m {
	case TLSImplicit:
		return "implicit"
	case TLSStartTLS:
		return "starttls"
	case TLSNone:
		return "none"
	}
	return "TLSMode(" + strconv.Itoa(int(m)) + ")"
}

// Options configures Dial. Zero values mean defaults.
type Options struct {
	// Name names the upstream in errors and logs; empty means Address.
	Name string
	// Address is host:port.
	Address string
	// TLS is the TLS mode; the zero value is TLSImplicit.
	TLS TLSMode
	// TLSConfig sets roots, ServerName or InsecureSkipVerify. It is cloned.
	// With nil, the system roots are used; an empty ServerName is taken
	// from the host of Address.
	TLSConfig *tls.Config
	// ConnectTimeout bounds the TCP connect and, for TLSImplicit, the TLS
	// handshake. Zero means 10s.
	ConnectTimeout time.Duration
	// CommandTimeout bounds each step of the login phase: the greeting,
	// every command (STARTTLS with its handshake, ID, LOGIN, CAPABILITY).
	// Zero means 60s.
	CommandTimeout time.Duration
	// SendClientIP sends ID ("x-originating-ip" ... "x-originating-port"
	// ... "x-connected-ip" ...) before login, if the upstream advertises
	// ID. NO and BAD answers to it are ignored.
	SendClientIP bool
}

func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = o.Address
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 60 * time.Second
	}
	return o
}

// ClientInfo describes the downstream connection the upstream one is for.
type ClientInfo struct {
	// Remote is the client's address.
	Remote netip.AddrPort
	// Local is the proxy's address the client connected to.
	Local netip.AddrPort
}

// Credentials are what Login sends to the upstream.
type Credentials struct {
	Username, Password string
	// XOAUTH2 says Password is an OAuth 2.0 access token: Login then uses
	// AUTHENTICATE XOAUTH2.
	XOAUTH2 bool
}

// Conn is an upstream connection in the login phase. Its methods must not
// be called concurrently, except Close, which may be called at any time to
// abort a step in progress.
type Conn struct {
	opts Options
	raw  net.Conn // the TCP connection; deadlines are set on it
	conn net.Conn // raw, or TLS over raw
	br   *bufio.Reader
	caps []string
	tags int

	broken   error     // set once the connection cannot be used any more
	bye      *response // an untagged BYE seen during the current step
	loggedIn bool

	mu       sync.Mutex // guards closed and detached
	closed   bool
	detached bool
}

// Dial connects to the upstream, secures the connection as opts.TLS says,
// reads the greeting and learns the capabilities (from the greeting's
// CAPABILITY code, else with a CAPABILITY command; always anew after
// STARTTLS). With opts.SendClientIP and a valid client.Remote, it then
// sends ID with the client's addresses (x-connected-ip only if
// client.Local is valid). A BYE or PREAUTH greeting is an error: PREAUTH means the
// upstream chose an identity itself, and the proxy could not tell whose
// mailbox it would relay. Every error wraps ErrUnavailable.
func Dial(ctx context.Context, opts Options, client ClientInfo) (*Conn, error) {
	opts = opts.withDefaults()
	c := &Conn{opts: opts}
	if err := c.connect(ctx); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	if err := c.step(ctx, "greeting", opts.CommandTimeout, c.readGreeting); err != nil {
		return nil, err
	}
	if opts.TLS == TLSStartTLS {
		if err := c.step(ctx, "starttls", opts.CommandTimeout, c.startTLS); err != nil {
			return nil, err
		}
	}
	if c.caps == nil {
		if err := c.capability(ctx); err != nil {
			return nil, err
		}
	}
	if err := c.identify(ctx, client); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

func (c *Conn) connect(ctx context.Context) error {
	deadline := time.Now().Add(c.opts.ConnectTimeout)
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{
		Enable:   true,
		Idle:     30 * time.Second,
		Interval: 15 * time.Second,
		Count:    4,
	}}
	raw, err := d.DialContext(dctx, "tcp", c.opts.Address)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return &Error{Upstream: c.opts.Name, Op: "dial", Err: fmt.Errorf("%w: %w", ErrUnavailable, err)}
	}
	// Relayed bulk data arrives in many small TLS records; reading ahead
	// takes them in one system call (and holds no buffer while idle).
	raw = readahead.Wrap(raw)
	c.raw, c.conn = raw, raw
	c.br = bufio.NewReaderSize(raw, 1024)
	if c.opts.TLS != TLSImplicit {
		return nil
	}
	err = c.step(ctx, "tls", time.Until(deadline), func() error { return c.handshake(dctx) })
	if err != nil {
		c.Close()
	}
	return err
}

// handshake starts TLS over the current connection. Bytes already
// buffered in cleartext would be an injection (they were not protected by
// TLS), so they are refused.
func (c *Conn) handshake(ctx context.Context) error {
	if ra, ok := c.raw.(*readahead.Conn); c.br.Buffered() > 0 || ok && ra.Buffered() > 0 {
		return protocolError("cleartext data after STARTTLS response")
	}
	cfg := &tls.Config{}
	if c.opts.TLSConfig != nil {
		cfg = c.opts.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(c.opts.Address)
		if err != nil {
			host = c.opts.Address
		}
		cfg.ServerName = host
	}
	tc := tls.Client(c.raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return err
	}
	c.mu.Lock() // Close may run concurrently
	c.conn = tc
	c.mu.Unlock()
	c.br = bufio.NewReaderSize(tc, 1024)
	return nil
}

// Capabilities returns the current capability list: before Login the
// pre-login list, after it the post-login one.
func (c *Conn) Capabilities() []string {
	return slices.Clone(c.caps)
}

// Detach returns the raw (possibly TLS) connection and the bytes already
// read from it but not consumed, and clears its deadlines. c must not be
// used afterwards; Close on it does nothing. Detach on a closed Conn
// returns nil, nil.
func (c *Conn) Detach() (net.Conn, []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.detached {
		return nil, nil
	}
	c.detached = true
	c.raw.SetDeadline(time.Time{})
	var rest []byte
	if n := c.br.Buffered(); n > 0 {
		b, _ := c.br.Peek(n)
		rest = slices.Clone(b)
	}
	return c.conn, rest
}

// Close closes the connection. It is idempotent, and a no-op after Detach.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.detached {
		return nil
	}
	c.closed = true
	return c.conn.Close()
}

// longAgo is a deadline in the past, to wake up blocked I/O.
var longAgo = time.Unix(1, 0)

// step runs fn, one step of the login phase, under a deadline of timeout
// (or ctx's, if earlier) and cancellation by ctx. Errors that are not
// already *Error become ErrUnavailable and break the connection.
func (c *Conn) step(ctx context.Context, op string, timeout time.Duration, fn func() error) error {
	c.mu.Lock()
	closed := c.closed || c.detached
	c.mu.Unlock()
	switch {
	case closed:
		return &Error{Upstream: c.opts.Name, Op: op, Err: fmt.Errorf("%w: %w", ErrUnavailable, net.ErrClosed)}
	case c.broken != nil:
		return &Error{Upstream: c.opts.Name, Op: op, Err: fmt.Errorf("%w: connection unusable after earlier error: %v", ErrUnavailable, c.broken)}
	case ctx.Err() != nil:
		return &Error{Upstream: c.opts.Name, Op: op, Err: fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())}
	}
	deadline := time.Now().Add(timeout)
	ctxDeadline := false
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline, ctxDeadline = d, true
	}
	c.raw.SetDeadline(deadline)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.raw.SetDeadline(longAgo)
		close(fired)
	})
	c.bye = nil
	err := fn()
	if !stop() {
		<-fired
	}
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		// A refusal in a tagged response leaves the connection in sync.
		return e
	}
	e = &Error{Upstream: c.opts.Name, Op: op}
	switch {
	case ctx.Err() != nil:
		err = ctx.Err()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("connection closed by upstream: %w", err)
	case errors.Is(err, os.ErrDeadlineExceeded) && ctxDeadline:
		// The conn deadline may fire before ctx reports its own expiry.
		err = context.DeadlineExceeded
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("no answer within %v: %w", timeout.Round(time.Millisecond), os.ErrDeadlineExceeded)
	}
	if c.bye != nil {
		e.Code, e.Text = c.bye.code, c.bye.text
	}
	e.Err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	c.broken = e
	return e
}

func (c *Conn) nextTag() string {
	c.tags++
	return "U" + strconv.Itoa(c.tags)
}

// exchange writes a command and reads responses up to its tagged one.
// parts[0] is written at once, each further part after a continuation
// request (synchronizing literals, SASL responses). Untagged CAPABILITY
// data is returned in caps. The tagged response may come before all parts
// are sent (a refused literal); then the rest is not sent.
func (c *Conn) exchange(tag string, parts ...[]byte) (final *response, caps []string, err error) {
	return c.exchangeParts(tag, false, parts)
}

// exchangeParts is exchange; with optional, the server may complete the
// command before asking for every part (a SASL error response that is
// sent only when the server reports a failure).
func (c *Conn) exchangeParts(tag string, optional bool, parts [][]byte) (final *response, caps []string, err error) {
	if _, err := c.conn.Write(parts[0]); err != nil {
		return nil, nil, err
	}
	next := 1
	for {
		r, err := readResponse(c.br)
		if err != nil {
			return nil, nil, err
		}
		switch r.tag {
		case "+":
			if next >= len(parts) {
				return nil, nil, protocolError("unexpected continuation request")
			}
			if _, err := c.conn.Write(parts[next]); err != nil {
				return nil, nil, err
			}
			next++
		case "*":
			if r.kind == "BYE" {
				c.bye = r
			}
			if rc := r.capabilities(); rc != nil {
				caps = rc
			}
		case tag:
			if r.kind == "OK" && next < len(parts) && !optional {
				return nil, nil, protocolError("OK before the whole command was sent")
			}
			return r, caps, nil
		default:
			return nil, nil, protocolError("response with unknown tag")
		}
	}
}

func (c *Conn) readGreeting() error {
	r, err := readResponse(c.br)
	if err != nil {
		return err
	}
	if r.tag != "*" {
		return protocolError("greeting is not untagged")
	}
	switch r.kind {
	case "OK":
		c.caps = r.capabilities()
		return nil
	case "BYE":
		return &Error{Upstream: c.opts.Name, Op: "greeting", Code: r.code, Text: r.text, Err: ErrUnavailable}
	case "PREAUTH":
		return &Error{Upstream: c.opts.Name, Op: "greeting", Text: r.text,
			Err: fmt.Errorf("%w: PREAUTH greeting: the upstream must ask for credentials", ErrUnavailable)}
	}
	return protocolError("greeting is not OK, PREAUTH or BYE")
}

func (c *Conn) startTLS() error {
	tag := c.nextTag()
	r, _, err := c.exchange(tag, []byte(tag+" STARTTLS\r\n"))
	if err != nil {
		return err
	}
	if r.kind != "OK" {
		return &Error{Upstream: c.opts.Name, Op: "starttls", Code: r.code, Text: r.text,
			Err: fmt.Errorf("%w: STARTTLS refused", ErrUnavailable)}
	}
	// Capabilities learned in cleartext must be forgotten (RFC 9051 6.2.1).
	c.caps = nil
	return c.handshake(context.Background())
}

// capability runs an explicit CAPABILITY command.
func (c *Conn) capability(ctx context.Context) error {
	return c.step(ctx, "capability", c.opts.CommandTimeout, func() error {
		tag := c.nextTag()
		r, caps, err := c.exchange(tag, []byte(tag+" CAPABILITY\r\n"))
		if err != nil {
			return err
		}
		if r.kind != "OK" {
			return &Error{Upstream: c.opts.Name, Op: "capability", Code: r.code, Text: r.text,
				Err: fmt.Errorf("%w: CAPABILITY failed", ErrUnavailable)}
		}
		if rc := r.capabilities(); rc != nil {
			caps = rc
		}
		if caps == nil {
			return protocolError("no capabilities in CAPABILITY response")
		}
		c.caps = caps
		return nil
	})
}

// sendID tells the upstream the client's address. Refusals are ignored:
// the ID is a courtesy for the upstream's logs and lockouts.
// identify sends ID with the client's addresses when the options say so
// and the upstream offers ID.
func (c *Conn) identify(ctx context.Context, client ClientInfo) error {
	if !c.opts.SendClientIP || !client.Remote.IsValid() || !hasCap(c.caps, "ID") {
		return nil
	}
	return c.step(ctx, "id", c.opts.CommandTimeout, func() error { return c.sendID(client) })
}

func (c *Conn) sendID(client ClientInfo) error {
	tag := c.nextTag()
	b := []byte(tag + ` ID ("x-originating-ip" "` + addrString(client.Remote.Addr()) +
		`" "x-originating-port" "` + strconv.Itoa(int(client.Remote.Port())) + `"`)
	if client.Local.IsValid() {
		b = append(b, ` "x-connected-ip" "`+addrString(client.Local.Addr())+`"`...)
	}
	b = append(b, ")\r\n"...)
	_, _, err := c.exchange(tag, b)
	return err
}

// addrString formats an address for ID: IPv4-mapped addresses as IPv4,
// without a zone (which is local to the proxy and may hold any byte).
func addrString(a netip.Addr) string {
	return a.Unmap().WithZone("").String()
}
