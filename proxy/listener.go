package proxy

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"time"

	proxyproto "github.com/pires/go-proxyproto"

	"imapproxy/config"
	"imapproxy/internal/readahead"
)

// listener is one bound [[listen]] address.
type listener struct {
	cfg config.Listener
	ln  net.Listener
}

// trusted reports whether addr may send a PROXY header.
func (l *listener) trusted(addr net.Addr) bool {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, p := range l.cfg.TrustedNets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

func (s *Server) acceptLoop(l *listener) {
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, then go on.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "listener", l.cfg.Address, "err", err)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.wg.Add(1)
		go s.handleConn(l, c)
	}
}

// handleConn owns one client connection from accept to login. A routed
// session is then handed to a fresh goroutine, which owns it to the end:
// this one's stack grew during the TLS handshake and the login, and an
// idle routed session should not keep that memory.
func (s *Server) handleConn(l *listener, c net.Conn) {
	var cleanup []func() // run in reverse order when the connection ends
	finish := func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
		s.wg.Done()
	}
	handedOff := false
	defer func() {
		recoverGoroutine("connection")
		if !handedOff {
			finish()
		}
	}()
	cleanup = append(cleanup, func() { c.Close() })
	s.metrics.Connections.WithLabelValues(l.cfg.Address).Inc()
	c = readahead.Wrap(c)

	// Only trusted peers' headers are read. IMAP servers speak first, so
	// waiting to see whether anyone else sends a header would delay every
	// greeting; a header from an untrusted peer is just an unknown command.
	if l.cfg.ProxyProtocol && l.trusted(c.RemoteAddr()) {
		pc := proxyproto.NewConn(c, proxyproto.WithPolicy(proxyproto.REQUIRE),
			proxyproto.SetReadHeaderTimeout(s.cfg.Limits.PreAuthTimeout.D()))
		// A zero-length read makes the header be read now, so that the
		// addresses below are the client's.
		if _, err := pc.Read(nil); err != nil {
			s.metrics.ConnsRejected.WithLabelValues("proxy_protocol").Inc()
			s.log.Warn("PROXY protocol header refused", "remote", c.RemoteAddr().String(), "err", err)
			return
		}
		c = pc
	}
	remote := addrPort(c.RemoteAddr())
	local := addrPort(c.LocalAddr())

	isTLS := false
	if l.cfg.TLS == config.TLSImplicit {
		tc := tls.Server(c, s.tlsConfig)
		tc.SetDeadline(deadline(s.cfg.Limits.PreAuthTimeout.D()))
		if err := tc.Handshake(); err != nil {
			s.log.Debug("TLS handshake failed", "remote", remote.String(), "err", err)
			return
		}
		tc.SetDeadline(time.Time{})
		c = tc
		isTLS = true
	}

	if ok, reason := s.acquire(remote.Addr()); !ok {
		s.metrics.ConnsRejected.WithLabelValues(reason).Inc()
		s.log.Warn("connection refused", "remote", remote.String(), "reason", reason)
		c.SetWriteDeadline(deadline(5 * time.Second))
		c.Write([]byte("* BYE [UNAVAILABLE] Too many connections, try again later\r\n"))
		return
	}
	cleanup = append(cleanup, func() { s.release(remote.Addr()) })
	s.metrics.ActiveConns.Inc()
	cleanup = append(cleanup, s.metrics.ActiveConns.Dec)

	ss := newSession(s, l, c, remote, local, isTLS)
	if !s.register(ss) {
		c.Write([]byte("* BYE [UNAVAILABLE] Server shutting down\r\n"))
		return
	}
	cleanup = append(cleanup, func() { s.unregister(ss) })
	relay := ss.serve()
	if relay == nil {
		return
	}
	handedOff = true
	go func() {
		defer finish()
		defer recoverGoroutine("session")
		relay()
	}()
}

// addrPort converts a net.Addr of a TCP connection.
func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
