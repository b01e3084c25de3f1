package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// client is a minimal raw IMAP client for the benchmarks. It does not parse
// responses: it follows lines and literals only far enough to find the
// tagged completion, counting the bytes it drains, so that the client costs
// as little CPU as possible and never limits the measured server.
type client struct {
	conn    net.Conn
	buf     []byte
	r, e    int // unread bytes are buf[r:e]
	tagN    int
	timeout time.Duration // per command; 0: none
	line    []byte        // scratch for command lines
}

// Read buffer sizes: small for the many connections of the session
// benchmarks, large for bulk transfers so that they take few reads.
const (
	smallBufSize = 16 << 10
	bulkBufSize  = 256 << 10
)

// dialIMAP connects to addr, makes the TLS handshake when tc is not nil and
// reads the greeting, which must be "* OK". timeout bounds the whole
// connection set-up and later each command.
func dialIMAP(ctx context.Context, addr string, tc *tls.Config, timeout time.Duration) (*client, error) {
	d := net.Dialer{Timeout: timeout}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &client{conn: raw, buf: make([]byte, smallBufSize), timeout: timeout}
	if timeout > 0 {
		raw.SetDeadline(time.Now().Add(timeout))
	}
	if tc != nil {
		t := tls.Client(raw, tc)
		if err := t.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		c.conn = t
	}
	line, err := c.readLine()
	if err != nil {
		c.close()
		return nil, fmt.Errorf("greeting from %s: %w", addr, err)
	}
	if !bytes.HasPrefix(line, []byte("* OK")) {
		c.close()
		return nil, fmt.Errorf("greeting from %s: %q", addr, trimCRLF(line))
	}
	return c, nil
}

// login dials addr and logs in as user.
func login(ctx context.Context, addr string, tc *tls.Config, user, pass string, timeout time.Duration) (*client, error) {
	c, err := dialIMAP(ctx, addr, tc, timeout)
	if err != nil {
		return nil, err
	}
	if err := c.ok("LOGIN " + user + " " + pass); err != nil {
		c.close()
		return nil, fmt.Errorf("login %s at %s: %w", user, addr, err)
	}
	return c, nil
}

func (c *client) close() error { return c.conn.Close() }

// growBuffer gives the client a large read buffer for bulk transfers.
func (c *client) growBuffer() {
	if len(c.buf) >= bulkBufSize {
		return
	}
	nb := make([]byte, bulkBufSize)
	c.e = copy(nb, c.buf[c.r:c.e])
	c.r = 0
	c.buf = nb
}

// fill reads more bytes into the buffer, compacting or growing it first.
func (c *client) fill() error {
	if c.r == c.e {
		c.r, c.e = 0, 0
	} else if c.e == len(c.buf) {
		if c.r > 0 {
			c.e = copy(c.buf, c.buf[c.r:c.e])
			c.r = 0
		} else {
			nb := make([]byte, 2*len(c.buf))
			c.e = copy(nb, c.buf[c.r:c.e])
			c.r = 0
			c.buf = nb
		}
	}
	n, err := c.conn.Read(c.buf[c.e:])
	c.e += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = errors.New("empty read")
	}
	return err
}

// readLine returns the next line with its CRLF. The slice is valid until
// the next read.
func (c *client) readLine() ([]byte, error) {
	for {
		if i := bytes.IndexByte(c.buf[c.r:c.e], '\n'); i >= 0 {
			line := c.buf[c.r : c.r+i+1]
			c.r += i + 1
			return line, nil
		}
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
}

// send writes one command with a fresh tag and returns the tag.
func (c *client) send(cmd string) (string, error) {
	c.tagN++
	tag := "b" + strconv.Itoa(c.tagN)
	c.line = append(c.line[:0], tag...)
	c.line = append(c.line, ' ')
	c.line = append(c.line, cmd...)
	c.line = append(c.line, '\r', '\n')
	if c.timeout > 0 {
		c.conn.SetDeadline(time.Now().Add(c.timeout))
	}
	_, err := c.conn.Write(c.line)
	return tag, err
}

// drain reads responses until the tagged completion for tag and returns
// its status word (OK, NO, BAD) and the number of bytes read, the
// completion included. Literals are skipped without being looked at.
func (c *client) drain(tag string) (status string, n int64, err error) {
	prefix := []byte(tag + " ")
	for {
		// The start of a line: find its end.
		i := bytes.IndexByte(c.buf[c.r:c.e], '\n')
		if i < 0 {
			if err := c.fill(); err != nil {
				return "", n, err
			}
			continue
		}
		line := c.buf[c.r : c.r+i+1]
		c.r += i + 1
		n += int64(len(line))
		if bytes.HasPrefix(line, prefix) {
			rest := line[len(prefix):]
			if j := bytes.IndexByte(rest, ' '); j >= 0 {
				rest = rest[:j]
			}
			return string(trimCRLF(rest)), n, nil
		}
		size, ok := literalSize(trimCRLF(line))
		if !ok {
			continue
		}
		// Skip the literal's payload, reading as needed.
		for size > 0 {
			if c.r == c.e {
				if err := c.fill(); err != nil {
					return "", n, err
				}
			}
			k := min(int64(c.e-c.r), size)
			c.r += int(k)
			size -= k
			n += k
		}
	}
}

// do sends cmd and drains its response.
func (c *client) do(cmd string) (status string, n int64, err error) {
	tag, err := c.send(cmd)
	if err != nil {
		return "", 0, err
	}
	return c.drain(tag)
}

// ok runs cmd and fails unless it completes with OK.
func (c *client) ok(cmd string) error {
	st, _, err := c.do(cmd)
	if err != nil {
		return err
	}
	if st != "OK" {
		return fmt.Errorf("%s: %s", firstWord(cmd), st)
	}
	return nil
}

// literalSize parses a "{n}" or "{n+}" at the end of a response line.
func literalSize(line []byte) (int64, bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false
	}
	end := len(line) - 1
	if line[end-1] == '+' {
		end--
	}
	start := bytes.LastIndexByte(line[:end], '{')
	if start < 0 || start+1 == end {
		return 0, false
	}
	n, err := strconv.ParseInt(string(line[start+1:end]), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

func trimCRLF(b []byte) []byte {
	return bytes.TrimRight(b, "\r\n")
}

func firstWord(s string) string {
	if i := bytes.IndexByte([]byte(s), ' '); i >= 0 {
		return s[:i]
	}
	return s
}
