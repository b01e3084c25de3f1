package proxy

import (
	"bytes"
	"strings"
	"sync/atomic"

	"imapproxy/auth"
	"imapproxy/upstream"
)

// routeCapabilities turns the upstream's post-login capabilities into what
// the client is told, and the guard's policy.
func routeCapabilities(upCaps []string, readOnly bool) ([]string, guardPolicy) {
	p := guardPolicy{readOnly: readOnly}
	unauth := false
	for _, c := range upCaps {
		switch strings.ToUpper(c) {
		case "LITERAL+":
			p.literalPlus = true
		case "LITERAL-":
			p.literalMinus = true
		case "UNAUTHENTICATE":
			unauth = true
		}
	}
	// COMPRESS hides later commands from the guard. It may pass only when
	// nothing the guard must still refuse could do harm: without
	// UNAUTHENTICATE upstream, a LOGIN or AUTHENTICATE after login is
	// refused by the upstream itself.
	p.allowCompress = !unauth && !readOnly
	var caps []string
	for _, c := range upstream.FilterCapabilities(upCaps) {
		if !p.allowCompress && strings.HasPrefix(strings.ToUpper(c), "COMPRESS=") {
			continue
		}
		caps = append(caps, c)
	}
	return caps, p
}

// runRoute answers the client's login and prepares the relay, which the
// caller runs on a goroutine of its own (ss.relay).
func (ss *session) runRoute(tag string, uc *upstream.Conn, upstreamName string, id auth.Identity) {
	srv := ss.srv
	caps, policy := routeCapabilities(uc.Capabilities(), id.ReadOnly)
	upConn, upInitial := uc.Detach()

	ss.mu.Lock()
	if ss.closing {
		ss.mu.Unlock()
		upConn.Close()
		ss.writef("* BYE Server shutting down")
		return
	}
	ss.upConn = upConn
	ss.mu.Unlock()
	ss.appPasswordID.Store(id.AppPasswordID)

	// Commands the client pipelined after LOGIN are already buffered.
	downInitial, _ := ss.br.Peek(ss.br.Buffered())
	downInitial = bytes.Clone(downInitial)
	ss.br, ss.cr = nil, nil

	if err := ss.writef(tag, " OK [CAPABILITY ", strings.Join(caps, " "), "] Logged in"); err != nil {
		return
	}
	toUp := srv.metrics.RelayedBytes.WithLabelValues(upstreamName, "to_upstream")
	toDown := srv.metrics.RelayedBytes.WithLabelValues(upstreamName, "to_client")

	sig := newContSignal()
	scanner := &responseScanner{}
	var compressTag atomic.Pointer[[]byte]
	scanner.onLine = func(head []byte) {
		sig.onUpstreamLine(head)
		if t := compressTag.Load(); t != nil && bytes.HasPrefix(head, *t) {
			scanner.stopped = true
			ss.w.setPassthrough()
		}
	}
	lim := srv.cfg.Limits
	g := &guard{
		policy:      policy,
		down:        ss.conn,
		up:          upConn,
		w:           ss.w,
		sig:         sig,
		idleTimeout: lim.IdleTimeout.D(),
		cmdTimeout:  lim.IdleTimeout.D(),
		onBytes:     func(n int) { toUp.Add(float64(n)) },
		stopCompress: func(tag string) {
			t := []byte(tag + " ")
			compressTag.Store(&t)
		},
	}
	rs := &relaySession{
		down:      ss.conn,
		up:        upConn,
		w:         ss.w,
		guard:     g,
		scanner:   scanner,
		onUpBytes: func(n int) { toDown.Add(float64(n)) },
	}
	ss.relay = func() {
		defer ss.cancel()
		defer ss.closeConns()
		active := srv.metrics.ActiveSessions.WithLabelValues("route")
		active.Inc()
		defer active.Dec()
		err := rs.run(ss.ctx, downInitial, upInitial)
		switch {
		case isTimeout(err):
			ss.log.Info("session idle timeout")
		case err != nil && !isClosedErr(err) && !ss.isClosing():
			ss.log.Info("session ended", "err", err)
		default:
			ss.log.Debug("session ended")
		}
	}
}
