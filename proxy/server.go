// Package proxy is imapproxy's client side: listeners, TLS and STARTTLS,
// PROXY protocol, the pre-auth front door shared by every mode, connection
// limits, and the route-mode relay.
package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"imapproxy/auth"
	"imapproxy/config"
	"imapproxy/merge"
	"imapproxy/router"
	"imapproxy/upstream"
)

// Authenticator checks a client's credentials and keeps the record of
// logins (auth.Authenticator).
type Authenticator interface {
	Authenticate(ctx context.Context, cr auth.Credentials) (auth.Identity, error)
	// UpstreamSecret is what to log in to the upstream with.
	UpstreamSecret(ctx context.Context, s config.Secret, id auth.Identity) (value string, xoauth2 bool, err error)
	// Succeeded and Failed record outcomes; Delay is how long to hold the
	// answer to a failure.
	Succeeded(ctx context.Context, id auth.Identity, remote netip.Addr, mechanism string)
	Failed(ctx context.Context, login string, remote netip.Addr, mechanism, reason string)
	Delay(login string, remote netip.Addr) time.Duration
}

// RevocationChecker returns those of ids (app passwords of live sessions)
// that are revoked (store.Store.RevokedAppPasswords).
type RevocationChecker func(ctx context.Context, ids []int64) ([]int64, error)

// Options configure a Server. Config, Auth and Router are required.
type Options struct {
	Config *config.Config
	Auth   Authenticator
	Router *router.Router
	// Certs serves the proxy's certificate; required when a listener uses
	// TLS or STARTTLS.
	Certs   *CertStore
	Logger  *slog.Logger // nil: slog.Default()
	Metrics *Metrics     // nil: unregistered metrics
	// BearerTokens offers AUTHENTICATE OAUTHBEARER and XOAUTH2.
	BearerTokens bool
	// Revoked, when set, is polled every RevocationInterval (default 2s)
	// for the app passwords of live sessions; a revoked one's sessions end
	// with a BYE.
	Revoked            RevocationChecker
	RevocationInterval time.Duration
	// Merge serves the sessions of merge-mode users; nil answers their
	// logins NO [UNAVAILABLE]. The caller closes it after Shutdown.
	Merge *merge.Manager
	// Planner (router plugins) decides plans before Router; nil: Router
	// alone.
	Planner router.Planner
}

// Server accepts client connections on every configured listener.
type Server struct {
	cfg       *config.Config
	auth      Authenticator
	router    *router.Router
	planner   router.Planner
	bearer    bool
	revoked   RevocationChecker
	revokeInt time.Duration
	log       *slog.Logger
	metrics   *Metrics
	tlsConfig *tls.Config
	upstreams map[string]*upstream.Pool
	// upstreamOpts are the dial options of every upstream, for the
	// accounts of merged sessions.
	upstreamOpts map[string]upstream.Options
	merge        *merge.Manager

	listeners []*listener

	mu       sync.Mutex
	perIP    map[netip.Addr]int
	total    int
	sessions map[*session]struct{}
	merged   map[*session]*mergeHandover // sessions handed to handoff
	handoff  *Handoff                    // serves merged sessions; made by the first merged login
	closing  bool
	stopped  chan struct{}  // closed by Shutdown
	wg       sync.WaitGroup // accept loops and sessions
}

// New checks opts and prepares a server; Listen binds its addresses.
func New(opts Options) (*Server, error) {
	if opts.Config == nil || opts.Auth == nil || opts.Router == nil {
		return nil, errors.New("proxy: Config, Auth and Router are required")
	}
	s := &Server{
		cfg:       opts.Config,
		auth:      opts.Auth,
		router:    opts.Router,
		planner:   opts.Planner,
		bearer:    opts.BearerTokens,
		revoked:   opts.Revoked,
		revokeInt: opts.RevocationInterval,
		log:       opts.Logger,
		metrics:   opts.Metrics,
		perIP:     make(map[netip.Addr]int),
		sessions:  make(map[*session]struct{}),
		upstreams: make(map[string]*upstream.Pool),
		stopped:   make(chan struct{}),

		upstreamOpts: make(map[string]upstream.Options),
		merge:        opts.Merge,
		merged:       make(map[*session]*mergeHandover),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.metrics == nil {
		s.metrics = NewMetrics(nil)
	}
	if s.revokeInt <= 0 {
		s.revokeInt = 2 * time.Second
	}
	if opts.Certs != nil {
		minVersion := uint16(tls.VersionTLS12)
		if opts.Config.TLS.MinVersion == "1.3" {
			minVersion = tls.VersionTLS13
		}
		s.tlsConfig = &tls.Config{GetCertificate: opts.Certs.GetCertificate, MinVersion: minVersion}
	}
	for _, l := range opts.Config.Listen {
		if l.TLS != config.TLSNone && s.tlsConfig == nil {
			return nil, fmt.Errorf("proxy: listener %s uses TLS but no certificate is loaded", l.Address)
		}
	}
	for _, u := range opts.Config.Upstreams {
		o, err := UpstreamOptions(u)
		if err != nil {
			return nil, err
		}
		s.upstreamOpts[u.Name] = o
		s.upstreams[u.Name] = upstream.NewPool(o, upstream.PoolOptions{
			Size: u.PreparedConnections, MaxIdle: u.PreparedMaxIdle.D(),
		})
	}
	return s, nil
}

// UpstreamOptions turns an [[upstream]] entry into dial options, reading
// its CA file.
func UpstreamOptions(u config.Upstream) (upstream.Options, error) {
	o := upstream.Options{
		Name:           u.Name,
		Address:        u.Address,
		ConnectTimeout: u.ConnectTimeout.D(),
		CommandTimeout: u.CommandTimeout.D(),
		SendClientIP:   u.SendClientIP,
	}
	switch u.TLS {
	case config.TLSStartTLS:
		o.TLS = upstream.TLSStartTLS
	case config.TLSNone:
		o.TLS = upstream.TLSNone
	default:
		o.TLS = upstream.TLSImplicit
	}
	if o.TLS != upstream.TLSNone {
		tc := &tls.Config{
			ServerName: u.ServerName, InsecureSkipVerify: u.InsecureSkipVerify, MinVersion: tls.VersionTLS12,
			// Resumed sessions skip the certificate exchange and its checks
			// on most logins.
			ClientSessionCache: tls.NewLRUClientSessionCache(1024),
		}
		if tc.ServerName == "" {
			host, _, err := net.SplitHostPort(u.Address)
			if err != nil {
				return o, fmt.Errorf("upstream %s: address: %w", u.Name, err)
			}
			tc.ServerName = host
		}
		if u.CAFile != "" {
			pem, err := os.ReadFile(u.CAFile)
			if err != nil {
				return o, fmt.Errorf("upstream %s: ca_file: %w", u.Name, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return o, fmt.Errorf("upstream %s: ca_file %s: no PEM certificates", u.Name, u.CAFile)
			}
			tc.RootCAs = pool
		}
		o.TLSConfig = tc
	}
	return o, nil
}

// Listen binds every configured listener.
func (s *Server) Listen() error {
	for _, lc := range s.cfg.Listen {
		ln, err := net.Listen("tcp", lc.Address)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen %s: %w", lc.Address, err)
		}
		s.listeners = append(s.listeners, &listener{cfg: lc, ln: ln})
	}
	return nil
}

// Addrs returns the bound addresses, in config order (after Listen).
func (s *Server) Addrs() []net.Addr {
	var out []net.Addr
	for _, l := range s.listeners {
		out = append(out, l.ln.Addr())
	}
	return out
}

// Serve accepts connections until Shutdown. It returns when the accept
// loops have stopped; sessions may still be running until Shutdown returns.
func (s *Server) Serve() {
	for _, p := range s.upstreams {
		p.Start()
	}
	var wg sync.WaitGroup
	if s.revoked != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer recoverGoroutine("revocations")
			s.pollRevocations()
		}()
	}
	for _, l := range s.listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.acceptLoop(l)
		}()
	}
	wg.Wait()
}

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		l.ln.Close()
	}
}

// Shutdown stops accepting, says BYE to every session and waits for them to
// end until ctx is done; then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		close(s.stopped)
	}
	s.closing = true
	sessions := make([]*session, 0, len(s.sessions))
	for ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	s.closeListeners()
	for _, ss := range s.shutdownMerged(sessions) {
		ss.shutdown()
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	defer func() {
		s.closeHandoff()
		for _, p := range s.upstreams {
			p.Close()
		}
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for ss := range s.sessions {
			ss.forceClose()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// acquire counts a new connection from ip; false when a limit is reached.
func (s *Server) acquire(ip netip.Addr) (ok bool, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false, "shutting down"
	}
	if s.total >= s.cfg.Limits.MaxConnections {
		return false, "max_connections"
	}
	if s.perIP[ip] >= s.cfg.Limits.MaxConnectionsPerIP {
		return false, "max_connections_per_ip"
	}
	s.total++
	s.perIP[ip]++
	return true, ""
}

func (s *Server) release(ip netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.perIP[ip] <= 1 {
		delete(s.perIP, ip)
	} else {
		s.perIP[ip]--
	}
}

func (s *Server) register(ss *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.sessions[ss] = struct{}{}
	return true
}

func (s *Server) unregister(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
}

// recoverGoroutine logs a panic with its stack instead of taking the whole
// process down; the goroutine's connection is then closed by its owner.
func recoverGoroutine(name string) {
	if r := recover(); r != nil {
		slog.Error("panic", "goroutine", name, "panic", r, "stack", string(debug.Stack()))
	}
}

// deadline returns now+d, or the zero time for d <= 0.
func deadline(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}
