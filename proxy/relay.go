package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Relay buffers: a small one per direction while a session is quiet, a
// pooled large one while data flows, so that idle sessions stay small.
const (
	smallRelayBuf = 1 << 10
	largeRelayBuf = 32 << 10
)

var largeBufPool = sync.Pool{New: func() any { b := make([]byte, largeRelayBuf); return &b }}

// relaySession is a routed session after login: bytes both ways, the
// client's side through the guard.
type relaySession struct {
	down    net.Conn
	up      net.Conn
	w       *downstreamWriter
	guard   *guard
	scanner *responseScanner
	// onUpBytes counts bytes relayed from the upstream.
	onUpBytes func(n int)
}

// run relays until either side ends or ctx is cancelled. downInitial and
// upInitial are bytes already read from each side.
func (rs *relaySession) run(ctx context.Context, downInitial, upInitial []byte) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	upErr := make(chan error, 1)
	go func() {
		defer recoverGoroutine("upstream-to-downstream")
		var err error
		defer func() {
			upErr <- err
			// The upstream's end (or BYE and close) ends the session.
			cancel()
		}()
		err = rs.upstreamToDownstream(upInitial)
	}()
	// Closing both connections is what ends the other direction.
	stop := context.AfterFunc(ctx, func() {
		rs.up.Close()
		rs.down.Close()
	})
	defer stop()
	downErr := rs.guard.run(ctx, downInitial)
	if isTimeout(downErr) {
		rs.w.writeLine([]byte("* BYE Autologout; idle for too long\r\n"))
	}
	cancel()
	rs.up.Close()
	rs.down.Close()
	uerr := <-upErr
	if isClosedErr(downErr) {
		return uerr
	}
	return downErr
}

// upstreamToDownstream copies the upstream's stream to the client, following
// its framing so the proxy can add lines of its own between responses.
func (rs *relaySession) upstreamToDownstream(initial []byte) error {
	if len(initial) > 0 {
		lb, atEnd := rs.scanner.scan(initial)
		if err := rs.w.relay(initial, lb, atEnd); err != nil {
			return err
		}
	}
	small := make([]byte, smallRelayBuf)
	var large *[]byte
	defer func() {
		if large != nil {
			largeBufPool.Put(large)
		}
	}()
	for {
		buf := small
		if large != nil {
			buf = *large
		}
		n, err := rs.up.Read(buf)
		lb, atEnd := -1, false
		if n > 0 {
			lb, atEnd = rs.scanner.scan(buf[:n])
		}
		// Inside a literal whose rest is on its way, read on while the
		// buffer has room: one write to the client instead of one per
		// upstream record. This never waits for nothing: the upstream owes
		// the rest of the literal.
		for err == nil && large != nil && rs.scanner.literal > 0 && n < len(buf)-4096 {
			var m int
			m, err = rs.up.Read(buf[n:])
			if m > 0 {
				l, e := rs.scanner.scan(buf[n : n+m])
				if l >= 0 {
					lb = n + l
				}
				atEnd = e
				n += m
			}
		}
		if n > 0 {
			if werr := rs.w.relay(buf[:n], lb, atEnd); werr != nil {
				return werr
			}
			if rs.onUpBytes != nil {
				rs.onUpBytes(n)
			}
			switch {
			case large == nil && n >= len(small)/2:
				large = largeBufPool.Get().(*[]byte)
			case large != nil && n < 1024:
				largeBufPool.Put(large)
				large = nil
			}
		}
		if err != nil {
			return err
		}
	}
}

// isClosedErr reports whether err only says that a connection ended.
func isClosedErr(err error) bool {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	return false
}

// isTimeout reports whether err is a deadline expiry.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// sleepCtx waits d unless ctx ends first; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
