package proxy

import (
	"bytes"
	"errors"
	"log"
	"net"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// Handing an authenticated connection to go-imap's server.
//
// Modes that serve the mailbox themselves (merge) run go-imap's imapserver
// behind the front door. The front door has authenticated the client
// already, so the session must start authenticated and the client must see
// one login and one OK:
//
//   - NewSession returns GreetingData{PreAuth: true}, so imapserver starts
//     the connection in the authenticated state and greets with
//     "* PREAUTH [CAPABILITY …]";
//   - connections reach imapserver's Serve through a listener of our own
//     (a channel), wrapped in a net.Conn that carries the identity to
//     NewSession, gives imapserver first the bytes the front door had
//     already read, and rewrites that PREAUTH greeting into the tagged
//     "OK [CAPABILITY …] Logged in" the client's LOGIN is waiting for.
//
// This keeps imapserver unmodified and the front door the only place that
// authenticates.

// HandoffSession makes the imapserver session for one handed-over
// connection; info is what the front door passed to Handoff.Serve.
type HandoffSession func(conn *imapserver.Conn, info any) (imapserver.Session, error)

// Handoff runs an imapserver for connections the front door authenticated.
type Handoff struct {
	srv  *imapserver.Server
	ln   *chanListener
	done chan struct{}
}

// NewHandoff starts an imapserver advertising caps, whose sessions
// newSession makes. Close stops it.
func NewHandoff(caps imap.CapSet, newSession HandoffSession, logger *log.Logger) *Handoff {
	h := &Handoff{ln: newChanListener(), done: make(chan struct{})}
	h.srv = imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			hc, ok := c.NetConn().(*handedConn)
			if !ok {
				return nil, nil, errors.New("proxy: a connection reached the handoff server without the front door")
			}
			s, err := newSession(c, hc.info)
			if err != nil {
				return nil, nil, err
			}
			return s, &imapserver.GreetingData{PreAuth: true}, nil
		},
		Caps:         caps,
		Logger:       logger,
		InsecureAuth: true, // never used: sessions start authenticated
	})
	go func() {
		defer close(h.done)
		h.srv.Serve(h.ln)
	}()
	return h
}

// Serve hands c to the imapserver: tag is the client's LOGIN (or
// AUTHENTICATE) tag, buffered the bytes the front door read past it. It
// returns at once; the server owns c from then on.
func (h *Handoff) Serve(c net.Conn, tag string, buffered []byte, info any) error {
	return h.ln.push(&handedConn{Conn: c, tag: tag, pending: buffered, info: info})
}

// Close stops accepting and closes every handed-over connection. The
// listener goes first and Serve is waited for before the server closes:
// imapserver's Close waits on a WaitGroup that Serve adds to, and the two
// must not overlap.
func (h *Handoff) Close() error {
	h.ln.Close()
	<-h.done
	return h.srv.Close()
}

// preauthToOK turns "* PREAUTH [CAPABILITY …] text" into
// "tag OK [CAPABILITY …] Logged in\r\n". Anything else (a BYE when the
// session could not be made) passes unchanged.
func preauthToOK(line []byte, tag string) []byte {
	rest, ok := bytes.CutPrefix(line, []byte("* PREAUTH "))
	if !ok {
		return append(line, "\r\n"...)
	}
	out := []byte(tag + " OK ")
	if bytes.HasPrefix(rest, []byte("[")) {
		if end := bytes.IndexByte(rest, ']'); end > 0 {
			out = append(out, rest[:end+1]...)
			out = append(out, ' ')
		}
	}
	return append(out, "Logged in\r\n"...)
}

// chanListener is a net.Listener fed by Handoff.Serve.
type chanListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) push(c net.Conn) error {
	select {
	case l.conns <- c:
		return nil
	case <-l.closed:
		return net.ErrClosed
	}
}

// Accept implements net.Listener.
func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// Addr implements net.Listener.
func (l *chanListener) Addr() net.Addr { return handoffAddr{} }

type handoffAddr struct{}

func (handoffAddr) Network() string { return "handoff" }
func (handoffAddr) String() string  { return "handoff" }
