package proxy

// Merge mode after the front door: the login of a merge user is checked
// here, the user's merged session is made (attached to the user's hub)
// while the client still waits for its LOGIN's answer, and only then is
// the connection handed to the Handoff's imapserver, so that a user whose
// accounts are all unreachable gets a tagged NO [UNAVAILABLE] rather than
// a BYE greeting.

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"imapproxy/auth"
	"imapproxy/merge"
	"imapproxy/router"
	"imapproxy/upstream"
)

// mergeCaps are the capabilities the merged session is served with,
// besides those imapserver adds on its own for IMAP4rev1 (SASL-IR,
// LITERAL-, UNSELECT, ENABLE, IDLE, UTF8=ACCEPT): IMAP4rev2 (whose
// backend needs merge.Session implements: NAMESPACE, MOVE, ESEARCH,
// SEARCHRES, LIST-EXTENDED, LIST-STATUS, STATUS=SIZE; imapserver lists
// these for IMAP4rev1 clients too), UIDPLUS's COPYUID/APPENDUID and UID
// EXPUNGE, \HasChildren/\HasNoChildren on every LIST line (CHILDREN),
// and LITERAL+, which imapserver handles itself. APPENDLIMIT is not
// here: it depends on the user's upstreams, and a session whose
// upstreams advertise one is served as an appendLimitGuard.
var mergeCaps = imap.CapSet{
	imap.CapIMAP4rev1:    {},
	imap.CapIMAP4rev2:    {},
	imap.CapNamespace:    {},
	imap.CapMove:         {},
	imap.CapUIDPlus:      {},
	imap.CapChildren:     {},
	imap.CapLiteralPlus:  {},
	imap.CapESearch:      {},
	imap.CapSearchRes:    {},
	imap.CapListExtended: {},
	imap.CapListStatus:   {},
	imap.CapStatusSize:   {},
}

// closeHandoff stops the merged sessions' imapserver (Shutdown, once the
// sessions have ended or been closed).
//
// The imapserver is started by the first merged login (runMerge), not by
// Serve: a server without merged sessions runs none, and the Handoff is
// never closed before its imapserver has accepted a connection (its Close
// waits for the listener's Serve, which must have begun by then).
func (s *Server) closeHandoff() {
	s.mu.Lock()
	h := s.handoff
	s.handoff = nil
	s.mu.Unlock()
	if h != nil {
		h.Close()
	}
}

// mergeHandover is what a merged session's connection carries into the
// Handoff: the session made before the hand-over, and, once imapserver has
// taken the connection, its imapserver.Conn (for a BYE at shutdown).
type mergeHandover struct {
	sess imapserver.Session

	mu      sync.Mutex
	conn    *imapserver.Conn
	byeSent bool // a shutdown came: say BYE instead of serving
}

// newMergedSession is the Handoff's HandoffSession: it returns the session
// startMerge made, unless the server began to shut down meanwhile.
func newMergedSession(c *imapserver.Conn, info any) (imapserver.Session, error) {
	h, ok := info.(*mergeHandover)
	if !ok {
		return nil, errors.New("proxy: handed-over connection without a merged session")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byeSent {
		h.sess.Close()
		return nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Server shutting down"}
	}
	h.conn = c
	if b, ok := h.sess.(interface{ OnBroken(func()) }); ok {
		// A response cut short by an upstream failure cannot be finished:
		// end the connection rather than leave the client waiting.
		b.OnBroken(func() { c.NetConn().Close() })
	}
	if a, ok := h.sess.(interface{ OnAlert(func(string)) }); ok {
		if hc, ok := c.NetConn().(*handedConn); ok {
			a.OnAlert(hc.alert)
		}
	}
	return h.sess, nil
}

// bye ends the merged session with a BYE written between two responses.
// It returns at once; the BYE is written by a goroutine the server waits
// for.
func (h *mergeHandover) bye(s *Server, text string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byeSent {
		return
	}
	h.byeSent = true
	if c := h.conn; c != nil {
		s.wg.Go(func() { c.Bye(text) })
	}
}

// appendLimitLearner is a merged session that finds its upstreams'
// smallest APPENDLIMIT (merge.Session.LearnAppendLimit).
type appendLimitLearner interface {
	LearnAppendLimit(ctx context.Context) (uint32, bool)
}

// appendLimitGuard is an idleGuard for a session whose upstreams
// advertise an APPENDLIMIT: imapserver then advertises the smallest as
// "APPENDLIMIT=n" and refuses larger APPENDs with NO [TOOBIG] before
// reading them. Sessions whose upstreams advertise none go without it
// (and get imapserver's own limit, unadvertised).
type appendLimitGuard struct {
	*idleGuard
	limit uint32
}

// AppendLimit implements imapserver.SessionAppendLimit.
func (g *appendLimitGuard) AppendLimit() uint32 { return g.limit }

var _ imapserver.SessionAppendLimit = (*appendLimitGuard)(nil)

// mergedSessionAPI is what a merged session implements: mergeCaps
// advertises NAMESPACE and MOVE, and imapserver refuses a session without
// them.
type mergedSessionAPI interface {
	imapserver.SessionNamespace
	imapserver.SessionMove
}

// OnBroken passes the session's connection closer on to the merged
// session.
func (g *idleGuard) OnBroken(f func()) {
	if b, ok := g.mergedSessionAPI.(interface{ OnBroken(func()) }); ok {
		b.OnBroken(f)
	}
}

// OnAlert passes the connection's alert writer on to the merged session.
func (g *idleGuard) OnAlert(f func(string)) {
	if a, ok := g.mergedSessionAPI.(interface{ OnAlert(func(string)) }); ok {
		a.OnAlert(f)
	}
}

// idleGuard makes Close wait for an IDLE still running. imapserver runs
// Session.Idle on a goroutine of its own and, when the client's
// connection fails during IDLE (a shutdown's BYE closes it), returns
// without waiting for it, so that Close would otherwise run while Idle
// still uses the session (or even before Idle has begun). Idle returns
// soon then: its stop channel is closed.
type idleGuard struct {
	mergedSessionAPI

	mu     sync.Mutex // held by Idle while it runs, and by Close
	closed bool
}

// Idle implements imapserver.Session.
func (g *idleGuard) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	return g.mergedSessionAPI.Idle(w, stop)
}

// Close implements imapserver.Session.
func (g *idleGuard) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	return g.mergedSessionAPI.Close()
}

// mergedConn is the client connection as the Handoff sees it; its Close,
// made by imapserver when the session ends, tells the session goroutine.
type mergedConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

// Close implements net.Conn.
func (c *mergedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.closed) })
	return err
}

// startMerge serves a merge plan: it resolves the accounts' credentials,
// checks that an account can be reached (and the client's password with
// the first account's upstream when the proxy holds no hash), makes the
// merged session and prepares the hand-over (routed = true).
func (ss *session) startMerge(ctx context.Context, tag string, cr auth.Credentials, id auth.Identity, plan router.Plan) (bool, *loginFailure) {
	srv := ss.srv
	if srv.merge == nil || plan.Merge == nil || len(plan.Merge.Accounts) == 0 {
		ss.log.Error("merge mode is not available", "user", id.User)
		return false, &loginFailure{code: "UNAVAILABLE", text: "This account's mode is not available", reason: "merge unavailable"}
	}
	spec := merge.UserSpec{
		User:              plan.User,
		UnifiedInbox:      plan.Merge.UnifiedInbox,
		UnifiedSpecialUse: plan.Merge.UnifiedSpecialUse,
		DefaultAccount:    plan.Merge.DefaultAccount,
	}
	for _, r := range plan.Merge.AppendRules {
		spec.AppendRules = append(spec.AppendRules, merge.AppendRule{From: r.From, To: r.To, Account: r.Account})
	}
	for _, a := range plan.Merge.Accounts {
		o, ok := srv.upstreamOpts[a.Upstream]
		if !ok {
			ss.log.Error("unknown upstream in plan", "user", id.User, "account", a.Name, "upstream", a.Upstream)
			return false, &loginFailure{code: "UNAVAILABLE", text: "No server is configured for this account", reason: "unknown upstream"}
		}
		secret, xoauth2, err := srv.auth.UpstreamSecret(ctx, a.Password, id)
		if errors.Is(err, auth.ErrNoPassthrough) {
			return false, &loginFailure{code: "AUTHENTICATIONFAILED", text: "This login cannot be used for this account", reason: "no stored upstream password"}
		}
		if err != nil {
			ss.log.Error("upstream credentials unavailable", "user", id.User, "account", a.Name, "err", err)
			return false, &loginFailure{code: "UNAVAILABLE", text: "The account's server is unavailable", reason: "upstream secret"}
		}
		spec.Accounts = append(spec.Accounts, merge.AccountSpec{
			Name:   a.Name,
			Prefix: a.Prefix,
			Options: upstream.AccountOptions{
				Options:     o,
				Credentials: upstream.Credentials{Username: a.Username, Password: secret, XOAUTH2: xoauth2},
			},
		})
	}
	if fail := ss.probeMerge(ctx, plan.Merge, spec.Accounts, id); fail != nil {
		return false, fail
	}
	made, err := srv.merge.NewSession(ctx, spec)
	if err != nil {
		ss.log.Error("merged session unavailable", "user", id.User, "err", err)
		return false, &loginFailure{code: "UNAVAILABLE", text: "The account's servers are unavailable, try again later", reason: "merge session"}
	}
	api, ok := made.(mergedSessionAPI)
	if !ok {
		made.Close()
		ss.log.Error("merged session lacks NAMESPACE or MOVE", "user", id.User)
		return false, &loginFailure{code: "UNAVAILABLE", text: "This account's mode is not available", reason: "merge session"}
	}
	var sess imapserver.Session = &idleGuard{mergedSessionAPI: api}
	if l, ok := made.(appendLimitLearner); ok {
		if limit, ok := l.LearnAppendLimit(ctx); ok {
			sess = &appendLimitGuard{idleGuard: sess.(*idleGuard), limit: limit}
		}
	}
	srv.metrics.Logins.WithLabelValues("ok").Inc()
	ss.log = ss.log.With("user", id.User, "mode", "merge")
	attrs := []any{"method", id.Method, "mechanism", cr.Mechanism, "accounts", len(spec.Accounts)}
	if id.AppPassword != "" {
		attrs = append(attrs, "app_password", id.AppPassword)
	}
	ss.log.Info("login", attrs...)
	ss.runMerge(tag, sess, id)
	srv.auth.Succeeded(ss.ctx, id, ss.remote.Addr(), cr.Mechanism)
	return true, nil
}

// probeMerge logs in to the user's accounts in order until one accepts,
// and closes that connection at once: a user none of whose accounts can
// be reached gets NO [UNAVAILABLE] to the LOGIN rather than an empty
// session. When the proxy holds no hash for the user, the configuration
// makes every account's password passthrough, and the first account's
// upstream is the one that checks the client's password: its refusal is a
// failed login, and while it is unreachable nobody can log in.
//
// This costs one upstream login per client login (a prepared connection
// where the upstream has them); the hub keeps its own connections.
func (ss *session) probeMerge(ctx context.Context, plan *router.MergePlan, spec []merge.AccountSpec, id auth.Identity) *loginFailure {
	srv := ss.srv
	for i, a := range plan.Accounts {
		pool, ok := srv.upstreams[a.Upstream]
		if !ok {
			continue
		}
		start := time.Now()
		uc, err := pool.Login(ctx, upstream.ClientInfo{Remote: ss.remote, Local: ss.local}, spec[i].Options.Credentials)
		if err == nil {
			srv.metrics.UpstreamDial.WithLabelValues(a.Upstream).Observe(time.Since(start).Seconds())
			uc.Close()
			return nil
		}
		kind := "unavailable"
		if errors.Is(err, upstream.ErrAuthFailed) {
			kind = "auth"
		}
		srv.metrics.UpstreamFailure.WithLabelValues(a.Upstream, kind).Inc()
		if id.UpstreamVerifies && i == 0 {
			if kind == "auth" {
				f := *errAuthFailed
				f.reason = "rejected by upstream"
				return &f
			}
			ss.log.Error("upstream login failed", "user", id.User, "account", a.Name, "upstream", a.Upstream, "err", err)
			return &loginFailure{code: "UNAVAILABLE", text: "The account's server is unavailable, try again later", reason: "upstream " + kind}
		}
		ss.log.Warn("account unavailable", "user", id.User, "account", a.Name, "upstream", a.Upstream, "err", err)
		if ctx.Err() != nil {
			break
		}
	}
	return &loginFailure{code: "UNAVAILABLE", text: "The account's servers are unavailable, try again later", reason: "no account reachable"}
}

// runMerge prepares the hand-over of the connection to the Handoff, which
// the caller runs on the session's own goroutine (ss.relay). Once the
// Handoff has the connection, imapserver owns it (and writes the LOGIN's
// tagged OK from its PREAUTH greeting); the goroutine then only waits for
// imapserver to close it.
func (ss *session) runMerge(tag string, sess imapserver.Session, id auth.Identity) {
	srv := ss.srv
	h := &mergeHandover{sess: sess}
	srv.mu.Lock()
	closing := srv.closing
	if !closing {
		if srv.handoff == nil {
			logger := slog.NewLogLogger(srv.log.With("component", "merge").Handler(), slog.LevelInfo)
			srv.handoff = NewHandoff(mergeCaps, newMergedSession, logger)
		}
		srv.merged[ss] = h
	}
	handoff := srv.handoff
	srv.mu.Unlock()
	if closing {
		sess.Close()
		ss.writef("* BYE Server shutting down")
		return
	}
	ss.appPasswordID.Store(id.AppPasswordID)

	// Commands the client pipelined after LOGIN are already buffered.
	buffered, _ := ss.br.Peek(ss.br.Buffered())
	buffered = bytes.Clone(buffered)
	ss.br, ss.cr = nil, nil
	mc := &mergedConn{Conn: ss.conn, closed: make(chan struct{})}

	ss.relay = func() {
		defer ss.cancel()
		defer func() {
			srv.mu.Lock()
			delete(srv.merged, ss)
			srv.mu.Unlock()
		}()
		active := srv.metrics.ActiveSessions.WithLabelValues("merge")
		active.Inc()
		defer active.Dec()
		ss.conn.SetReadDeadline(time.Time{})
		if err := handoff.Serve(mc, tag, buffered, h); err != nil {
			// The Handoff stopped: the server is shutting down.
			sess.Close()
			ss.writef("* BYE Server shutting down")
			ss.closeConns()
			return
		}
		<-mc.closed
		ss.log.Debug("session ended")
	}
}

// shutdownMerged says BYE to the merged sessions among sessions and
// returns the others, which Shutdown ends as usual. The caller holds no
// lock.
func (s *Server) shutdownMerged(sessions []*session) []*session {
	s.mu.Lock()
	var rest []*session
	var byes []*mergeHandover
	for _, ss := range sessions {
		if h, ok := s.merged[ss]; ok {
			byes = append(byes, h)
		} else {
			rest = append(rest, ss)
		}
	}
	s.mu.Unlock()
	for _, h := range byes {
		h.bye(s, "Server shutting down")
	}
	return rest
}
