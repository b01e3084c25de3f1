package auth

import (
	"context"
	"time"

	"imapproxy/store"
)

// auditQueue is how many audit events may wait for the store; when it is
// full, recording waits for the store instead (events are never dropped).
const auditQueue = 1024

// auditWriter writes audit events to the store from a goroutine of its
// own, so that a login's answer and the client's first command do not wait
// for a write. It runs from NewAuthenticator (with a store) until Close.
type auditWriter struct {
	st     store.Store
	onErr  func(error)
	events chan store.Event
	done   chan struct{}
}

func newAuditWriter(st store.Store, onErr func(error)) *auditWriter {
	w := &auditWriter{st: st, onErr: onErr, events: make(chan store.Event, auditQueue), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *auditWriter) run() {
	defer close(w.done)
	for e := range w.events {
		w.write(e)
	}
}

func (w *auditWriter) write(e store.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w.onErr(w.st.AddEvent(ctx, e))
}

// add queues e, or writes it at once when the queue is full.
func (w *auditWriter) add(e store.Event) {
	select {
	case w.events <- e:
	default:
		w.write(e)
	}
}

// close writes what is queued and stops the goroutine.
func (w *auditWriter) close() {
	close(w.events)
	<-w.done
}
