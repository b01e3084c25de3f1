// Package readahead wraps TCP connections so that reads take everything
// the kernel has in one system call, without holding a buffer while the
// connection is idle.
//
// Go's TLS layer reads a record at a time, and a relay that reads into a
// small buffer does the same: on a busy stream that is one system call per
// few kilobytes. A bufio.Reader would fix that, but would keep its buffer
// for the life of every idle connection. This wrapper waits for
// readability first (syscall.RawConn, no buffer), then reads into a pooled
// buffer that goes back to the pool as soon as it is drained. No library
// offers that combination, so it is written here.
package readahead

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
)

// Size is the pooled read buffer's size.
const Size = 32 << 10

var pool = sync.Pool{New: func() any { b := make([]byte, Size); return &b }}

// Conn is a TCP connection with read-ahead.
type Conn struct {
	*net.TCPConn
	rc   syscall.RawConn
	buf  *[]byte // nil when nothing is buffered
	r, w int
}

// Wrap returns c with read-ahead when it is a *net.TCPConn, else c.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &Conn{TCPConn: tc, rc: rc}
}

// Buffered returns how many bytes were read ahead and not yet consumed.
func (c *Conn) Buffered() int { return c.w - c.r }

// Read implements net.Conn. Reads with a large buffer go straight to the
// socket; smaller ones are served from one large read.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.buf != nil {
		return c.copyOut(p), nil
	}
	if len(p) >= Size/2 {
		return c.TCPConn.Read(p)
	}
	var n int
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		b := pool.Get().(*[]byte)
		n, rerr = syscall.Read(int(fd), *b)
		if rerr == syscall.EAGAIN || rerr == syscall.EINTR {
			pool.Put(b)
			return false // wait for readability, holding no buffer
		}
		if rerr != nil || n <= 0 {
			pool.Put(b)
			return true
		}
		c.buf, c.r, c.w = b, 0, n
		return true
	})
	switch {
	case err != nil:
		return 0, c.wrapErr(err)
	case rerr != nil:
		return 0, c.wrapErr(rerr)
	case n == 0:
		return 0, io.EOF
	}
	return c.copyOut(p), nil
}

func (c *Conn) copyOut(p []byte) int {
	n := copy(p, (*c.buf)[c.r:c.w])
	c.r += n
	if c.r == c.w {
		pool.Put(c.buf)
		c.buf, c.r, c.w = nil, 0, 0
	}
	return n
}

// wrapErr gives errors the shape net.Conn reads have, so that callers'
// checks for timeouts and closed connections keep working.
func (c *Conn) wrapErr(err error) error {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return err
	}
	return &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// WriteTo implements io.WriterTo through Read, so that io.Copy does not
// reach around the read-ahead buffer to the socket (*net.TCPConn has a
// WriteTo of its own).
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, struct{ io.Reader }{c})
}

// The other methods, deadlines among them, come from *net.TCPConn
// (RawConn.Read honours the read deadline).
var _ net.Conn = (*Conn)(nil)
