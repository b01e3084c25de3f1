package proxy

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"time"
)

// Output coalescing of handed-over connections.
//
// imapserver flushes its buffered writer after every response line, so a
// FETCH of 10,000 messages would be 10,000 writes (and TLS records) of a
// few dozen bytes. handedConn keeps what imapserver writes and sends it
// in large writes instead: when flushSize bytes are pending, before
// every Read (imapserver reads the next command only after it has
// written the whole answer, so an answer never waits), and flushDelay
// after the first pending byte at the latest (updates written during
// IDLE, while a Read is already waiting). No library does this for a
// connection whose writer flushes per line, so it is written here.
const (
	flushSize  = 32 << 10
	flushDelay = 2 * time.Millisecond
	// flushTimeout bounds a flush imapserver set no write deadline for
	// (its deadlines cover a response while it writes it, not the later
	// flush); a client that reads nothing for that long is gone.
	flushTimeout = time.Minute
	// closeFlushTimeout bounds the last flush before Close.
	closeFlushTimeout = 5 * time.Second
)

// handedConn is a front-door connection on its way into imapserver.
type handedConn struct {
	net.Conn
	tag  string
	info any

	rmu     sync.Mutex
	pending []byte // read by the front door but not consumed

	wmu      sync.Mutex
	greeted  bool
	greeting []byte      // the start of imapserver's greeting line, until its end
	out      []byte      // written by imapserver, not sent yet
	timer    *time.Timer // flushes out flushDelay after its first byte
	armed    bool
	werr     error     // the first failed flush's; every later Write fails with it
	deadline time.Time // the write deadline imapserver asked for
	lastSet  time.Time // the deadline last set on Conn
}

func (c *handedConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		c.rmu.Unlock()
		return n, nil
	}
	c.rmu.Unlock()
	c.wmu.Lock()
	err := c.flushLocked()
	c.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// Write keeps p for the next flush. imapserver's first line, the PREAUTH
// greeting, becomes the tagged OK of the client's login.
func (c *handedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	if !c.greeted {
		c.greeting = append(c.greeting, p...)
		i := bytes.Index(c.greeting, []byte("\r\n"))
		if i < 0 {
			return len(p), nil
		}
		line, rest := c.greeting[:i], c.greeting[i+2:]
		c.out = append(c.out, preauthToOK(line, c.tag)...)
		c.out = append(c.out, rest...)
		c.greeted, c.greeting = true, nil
	} else if len(c.out) == 0 && len(p) >= flushSize {
		// A large piece of a literal: send it as it is, without a copy.
		if err := c.sendLocked(p); err != nil {
			return 0, err
		}
		return len(p), nil
	} else {
		c.out = append(c.out, p...)
	}
	if len(c.out) >= flushSize {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if !c.armed {
		c.armed = true
		if c.timer == nil {
			c.timer = time.AfterFunc(flushDelay, c.flushLater)
		} else {
			c.timer.Reset(flushDelay)
		}
	}
	return len(p), nil
}

// alert writes an untagged "OK [ALERT] text" for the client. Call it
// only from a session method before it writes anything of its response
// (imapserver has then written the whole previous response and flushed
// it), never from IDLE: the line must not land inside another response.
func (c *handedConn) alert(text string) {
	text = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, text)
	c.Write([]byte("* OK [ALERT] " + text + "\r\n"))
}

// flushLater is the timer's flush.
func (c *handedConn) flushLater() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.flushLocked()
}

// SetWriteDeadline keeps imapserver's deadline for the flushes; the
// connection's own deadline is set when bytes are sent.
func (c *handedConn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	c.deadline = t
	c.wmu.Unlock()
	return nil
}

// SetDeadline sets the read deadline and keeps the write deadline.
func (c *handedConn) SetDeadline(t time.Time) error {
	c.SetWriteDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

// flushLocked sends what is pending; c.wmu is held.
func (c *handedConn) flushLocked() error {
	if c.armed {
		c.armed = false
		c.timer.Stop()
	}
	if c.werr != nil || len(c.out) == 0 {
		return c.werr
	}
	err := c.sendLocked(c.out)
	if cap(c.out) > 2*flushSize {
		c.out = nil // a large literal passed: do not keep its buffer
	} else {
		c.out = c.out[:0]
	}
	return err
}

// sendLocked writes b to the connection under the write deadline;
// c.wmu is held.
func (c *handedConn) sendLocked(b []byte) error {
	if c.armed {
		c.armed = false
		c.timer.Stop()
	}
	d := c.deadline
	if d.IsZero() {
		d = time.Now().Add(flushTimeout)
	}
	// Re-arming a deadline costs; one that moved less than a second is
	// close enough.
	if diff := d.Sub(c.lastSet); diff > time.Second || diff < -time.Second {
		c.Conn.SetWriteDeadline(d)
		c.lastSet = d
	}
	_, err := c.Conn.Write(b)
	if err != nil {
		c.werr = err
	}
	return err
}

// Close sends what is pending (a BYE, say), briefly, and closes.
func (c *handedConn) Close() error {
	c.wmu.Lock()
	if len(c.out) > 0 && c.werr == nil {
		c.deadline = time.Now().Add(closeFlushTimeout)
		c.lastSet = time.Time{}
		c.flushLocked()
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.armed = false
	c.werr = net.ErrClosed
	c.wmu.Unlock()
	return c.Conn.Close()
}
