package proxy

import (
	"errors"
	"net"
	"sync"
	"time"
)

// maxPendingLines bounds the lines the proxy may queue for a client while
// the upstream is in the middle of a response. A client that makes the
// proxy refuse more commands than this before the upstream pauses is cut off.
const maxPendingLines = 64

var errTooManyPending = errors.New("too many refused commands queued")

// downstreamWriter serialises writes to the client. The upstream-to-client
// copy writes raw chunks; the proxy's own lines (a BAD for a refused command,
// a continuation request, a BYE) must not land inside an upstream response,
// so they wait until the copy reaches a boundary between responses.
type downstreamWriter struct {
	mu         sync.Mutex
	conn       net.Conn
	timeout    time.Duration // per write; 0: none
	atBoundary bool
	pending    [][]byte
	afterFlush func() // called once the pending lines are written
	err        error
	armed      time.Time // when the write deadline was last set
}

func newDownstreamWriter(conn net.Conn, timeout time.Duration) *downstreamWriter {
	return &downstreamWriter{conn: conn, timeout: timeout, atBoundary: true}
}

func (w *downstreamWriter) writeLocked(b []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.timeout > 0 {
		// Moving the deadline costs a timer update per write; at most once
		// a second is enough to bound a client that stopped reading.
		if now := time.Now(); now.Sub(w.armed) > time.Second {
			w.armed = now
			w.conn.SetWriteDeadline(now.Add(w.timeout))
		}
	}
	_, err := w.conn.Write(b)
	if err != nil {
		w.err = err
	}
	return err
}

// writeLine writes one of the proxy's own lines now if the stream is
// between responses, else queues it for the next boundary.
func (w *downstreamWriter) writeLine(line []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.atBoundary {
		return w.writeLocked(line)
	}
	if len(w.pending) >= maxPendingLines {
		return errTooManyPending
	}
	w.pending = append(w.pending, line)
	return nil
}

// relay writes a chunk of the upstream's stream. lastBoundary is the offset
// just after the last response boundary inside b (-1 for none) and atEnd
// whether b ends on one; queued lines go out at the last boundary.
func (w *downstreamWriter) relay(b []byte, lastBoundary int, atEnd bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) == 0 || lastBoundary < 0 {
		w.atBoundary = atEnd
		return w.writeLocked(b)
	}
	// One write where possible: the chunk up to the boundary, the queued
	// lines, then the rest.
	out := make([]byte, 0, len(b)+64*len(w.pending))
	out = append(out, b[:lastBoundary]...)
	for _, l := range w.pending {
		out = append(out, l...)
	}
	out = append(out, b[lastBoundary:]...)
	w.pending = w.pending[:0]
	w.atBoundary = atEnd
	err := w.writeLocked(out)
	if f := w.afterFlush; f != nil {
		w.afterFlush = nil
		f()
	}
	return err
}

// writeLineThen writes line like writeLine and calls then once it is
// written (or could not be).
func (w *downstreamWriter) writeLineThen(line []byte, then func()) {
	w.mu.Lock()
	if w.atBoundary || w.err != nil || len(w.pending) >= maxPendingLines {
		w.writeLocked(line)
		w.mu.Unlock()
		then()
		return
	}
	w.pending = append(w.pending, line)
	w.afterFlush = then
	w.mu.Unlock()
}

// setPassthrough marks the stream as no longer followed (after COMPRESS):
// the proxy can no longer add lines of its own.
func (w *downstreamWriter) setPassthrough() {
	w.mu.Lock()
	w.atBoundary = false
	w.mu.Unlock()
}
