package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"

	"imapproxy/auth"
	"imapproxy/config"
)

// session is one client connection: the front door until login, then the
// mode's handler.
type session struct {
	srv    *Server
	lis    *listener
	conn   net.Conn
	remote netip.AddrPort
	local  netip.AddrPort
	isTLS  bool
	log    *slog.Logger

	br       *bufio.Reader
	cr       *commandReader
	w        *downstreamWriter
	failures int
	// relay, set by a successful login, runs the rest of the session on
	// the goroutine that takes it over.
	relay func()

	ctx    context.Context
	cancel context.CancelFunc

	// appPasswordID is the app password the session logged in with (0:
	// none), for revocation.
	appPasswordID atomic.Int64

	mu       sync.Mutex
	upConn   net.Conn // set once routed
	closing  bool
	closeOne sync.Once
}

func newSession(s *Server, l *listener, c net.Conn, remote, local netip.AddrPort, isTLS bool) *session {
	ctx, cancel := context.WithCancel(context.Background())
	ss := &session{
		srv: s, lis: l, conn: c, remote: remote, local: local, isTLS: isTLS,
		log:    s.log.With("remote", remote.String()),
		ctx:    ctx,
		cancel: cancel,
	}
	ss.setConn(c)
	return ss
}

// setConn (re)builds the reader and writer over c (after STARTTLS).
func (ss *session) setConn(c net.Conn) {
	ss.conn = c
	ss.br = bufio.NewReaderSize(c, 1024) // long lines are read in pieces
	ss.w = newDownstreamWriter(c, 30*time.Second)
	lim := ss.srv.cfg.Limits
	ss.cr = &commandReader{
		r:           ss.br,
		maxLine:     lim.MaxLineLength,
		maxLiteral:  lim.MaxLiteralPreAuth,
		literalPlus: true,
		cont: func() error {
			return ss.w.writeLine([]byte("+ Ready for literal data\r\n"))
		},
	}
}

func (ss *session) writef(parts ...string) error {
	return ss.w.writeLine([]byte(strings.Join(parts, "") + "\r\n"))
}

// cleartextRefused reports whether credentials must not be sent now.
func (ss *session) cleartextRefused() bool {
	return !ss.isTLS && !ss.lis.cfg.AllowCleartextAuth
}

// capabilities is what the front door offers before login.
func (ss *session) capabilities() string {
	caps := []string{"IMAP4rev1", "LITERAL-", "SASL-IR", "ID"}
	if !ss.isTLS && ss.lis.cfg.TLS == config.TLSStartTLS {
		caps = append(caps, "STARTTLS")
	}
	if ss.cleartextRefused() {
		caps = append(caps, "LOGINDISABLED")
	} else {
		caps = append(caps, "AUTH=PLAIN")
		if ss.srv.bearer {
			caps = append(caps, "AUTH=OAUTHBEARER", "AUTH=XOAUTH2")
		}
	}
	return strings.Join(caps, " ")
}

// serve runs the front door until login hands over or the client leaves.
func (ss *session) serve() (relay func()) {
	defer func() {
		if relay == nil {
			ss.cancel()
			ss.closeConns()
		}
	}()
	if err := ss.writef("* OK [CAPABILITY ", ss.capabilities(), "] imapproxy ready"); err != nil {
		return nil
	}
	for {
		ss.conn.SetReadDeadline(deadline(ss.srv.cfg.Limits.PreAuthTimeout.D()))
		cmd, err := ss.cr.readCommand()
		if err != nil {
			var pe *protocolError
			if errors.As(err, &pe) {
				code := ""
				if pe.code != "" {
					code = "[" + pe.code + "] "
				}
				if pe.fatal {
					ss.writef("* BYE ", code, pe.text)
					return nil
				}
				if ss.writef(pe.tag, " BAD ", code, pe.text) != nil {
					return nil
				}
				continue
			}
			if ss.isClosing() {
				ss.writef("* BYE Server shutting down")
			} else if isTimeout(err) {
				ss.writef("* BYE Autologout; idle for too long")
			} else if !isClosedErr(err) {
				ss.log.Debug("read failed", "err", err)
			}
			return nil
		}
		done, err := ss.dispatch(cmd)
		if ss.relay != nil {
			return ss.relay
		}
		if err != nil || done {
			return nil
		}
		if ss.isClosing() {
			ss.writef("* BYE Server shutting down")
			return nil
		}
	}
}

// dispatch handles one pre-auth command. done means the connection is
// finished with the front door (logged out, or served by a mode).
func (ss *session) dispatch(cmd *command) (done bool, err error) {
	switch cmd.name {
	case "CAPABILITY":
		if err := ss.writef("* CAPABILITY ", ss.capabilities()); err != nil {
			return true, err
		}
		return false, ss.writef(cmd.tag, " OK CAPABILITY completed")
	case "NOOP":
		return false, ss.writef(cmd.tag, " OK NOOP completed")
	case "LOGOUT":
		ss.writef("* BYE Logging out")
		ss.writef(cmd.tag, " OK LOGOUT completed")
		return true, nil
	case "ID":
		ss.logClientID(cmd.args)
		if err := ss.writef(`* ID ("name" "imapproxy")`); err != nil {
			return true, err
		}
		return false, ss.writef(cmd.tag, " OK ID completed")
	case "STARTTLS":
		return ss.startTLS(cmd)
	case "LOGIN":
		if len(cmd.args) != 2 || !cmd.args[0].isString() || !cmd.args[1].isString() {
			return false, ss.writef(cmd.tag, " BAD LOGIN takes a user name and a password")
		}
		cr := ss.credentials(cmd.args[0].value, "login")
		cr.Password = cmd.args[1].value
		return ss.login(cmd.tag, cr)
	case "AUTHENTICATE":
		return ss.authenticate(cmd)
	case "ENABLE", "SELECT", "EXAMINE", "LIST", "LSUB", "STATUS", "CREATE", "DELETE", "RENAME",
		"SUBSCRIBE", "UNSUBSCRIBE", "APPEND", "NAMESPACE", "IDLE", "UNAUTHENTICATE":
		return false, ss.writef(cmd.tag, " BAD Log in first")
	default:
		return false, ss.writef(cmd.tag, " BAD Unknown command")
	}
}

func (ss *session) logClientID(args []token) {
	if !ss.log.Enabled(ss.ctx, slog.LevelDebug) {
		return
	}
	var kv []string
	for _, a := range args {
		if a.isString() && !a.isNIL() && len(kv) < 20 {
			kv = append(kv, a.value)
		}
	}
	ss.log.Debug("client ID", "id", strings.Join(kv, " "))
}

func (ss *session) startTLS(cmd *command) (bool, error) {
	if ss.isTLS || ss.lis.cfg.TLS != config.TLSStartTLS {
		return false, ss.writef(cmd.tag, " BAD STARTTLS is not available here")
	}
	// Anything the client sent after STARTTLS in the clear is dropped
	// (command injection, RFC 9051 section 11.1), so a new reader is used.
	if err := ss.writef(cmd.tag, " OK Begin TLS negotiation now"); err != nil {
		return true, err
	}
	tc := tls.Server(ss.conn, ss.srv.tlsConfig)
	tc.SetDeadline(deadline(ss.srv.cfg.Limits.PreAuthTimeout.D()))
	if err := tc.Handshake(); err != nil {
		ss.log.Debug("STARTTLS handshake failed", "err", err)
		return true, err
	}
	tc.SetDeadline(time.Time{})
	ss.isTLS = true
	ss.mu.Lock()
	ss.setConn(tc)
	ss.mu.Unlock()
	return false, nil
}

func (ss *session) authenticate(cmd *command) (bool, error) {
	if len(cmd.args) < 1 || len(cmd.args) > 2 || cmd.args[0].kind != tokAtom {
		return false, ss.writef(cmd.tag, " BAD AUTHENTICATE takes a mechanism and an optional initial response")
	}
	mech := strings.ToUpper(cmd.args[0].value)
	bearer := mech == "OAUTHBEARER" || mech == "XOAUTH2"
	if mech != "PLAIN" && !(bearer && ss.srv.bearer) {
		return false, ss.writef(cmd.tag, " NO [CANNOT] Unsupported authentication mechanism")
	}
	if ss.cleartextRefused() {
		return false, ss.refusePrivacy(cmd.tag)
	}
	var ir []byte
	if len(cmd.args) == 2 {
		if v := cmd.args[1].value; v != "=" {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return false, ss.writef(cmd.tag, " BAD Invalid base64 in initial response")
			}
			ir = b
		} else {
			ir = []byte{}
		}
	}
	cr := ss.credentials("", strings.ToLower(mech))
	if !bearer {
		var authzErr bool
		srv := sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				authzErr = true
				return errors.New("authorization identity differs")
			}
			cr.Username, cr.Password = username, password
			return nil
		})
		done, err := ss.saslExchange(cmd.tag, srv, ir)
		if done || err != nil {
			return done, err
		}
		if cr.Username == "" {
			msg := " BAD Malformed PLAIN response"
			if authzErr {
				msg = " NO [AUTHORIZATIONFAILED] Logging in as another user is not supported"
			}
			return false, ss.writef(cmd.tag, msg)
		}
		return ss.login(cmd.tag, cr)
	}
	// Bearer tokens are checked inside the SASL exchange, whose error
	// challenge (RFC 7628) must come before the final NO.
	ctx, cancel := context.WithTimeout(ss.ctx, 2*time.Minute)
	defer cancel()
	var id auth.Identity
	var fail *loginFailure
	check := func(user, token string) error {
		cr.Username, cr.Token = user, token
		id, fail = ss.verify(ctx, cr)
		if fail != nil {
			return auth.ErrInvalidToken
		}
		return nil
	}
	var srv sasl.Server
	if mech == "XOAUTH2" {
		srv = auth.NewXOAUTH2Server(check, "")
	} else {
		srv = auth.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			if check(o.Username, o.Token) != nil {
				return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
			}
			return nil
		})
	}
	done, err := ss.saslExchange(cmd.tag, srv, ir)
	if done || err != nil {
		return done, err
	}
	if fail == nil && cr.Token == "" {
		return false, ss.writef(cmd.tag, " BAD Malformed ", mech, " response")
	}
	if fail == nil {
		var routed bool
		if routed, fail = ss.startRoute(ctx, cmd.tag, cr, id); fail == nil {
			return routed, nil
		}
	}
	return ss.loginFailed(cmd.tag, cr, fail)
}

// saslExchange runs srv until it is done, with ir as the initial response
// (nil: none). A cancelled exchange or a protocol error is answered here
// (handled = true); a failure of the mechanism itself is left to the
// caller, which knows the credentials it saw.
func (ss *session) saslExchange(tag string, srv sasl.Server, ir []byte) (handled bool, err error) {
	resp := ir
	for {
		challenge, done, serr := srv.Next(resp)
		if done || serr != nil {
			return false, nil
		}
		if err := ss.writef("+ ", base64.StdEncoding.EncodeToString(challenge)); err != nil {
			return true, err
		}
		ss.conn.SetReadDeadline(deadline(ss.srv.cfg.Limits.PreAuthTimeout.D()))
		line, err := ss.cr.readLine()
		if err == errLineTooLong {
			ss.writef("* BYE Authentication response too long")
			return true, err
		}
		if err != nil {
			return true, err
		}
		if string(line) == "*" {
			return true, ss.writef(tag, " BAD Authentication cancelled")
		}
		resp, err = base64.StdEncoding.DecodeString(string(line))
		if err != nil {
			return true, ss.writef(tag, " BAD Invalid base64 in response")
		}
	}
}

func (ss *session) refusePrivacy(tag string) error {
	ss.srv.metrics.Logins.WithLabelValues("privacy_required").Inc()
	return ss.writef(tag, " NO [PRIVACYREQUIRED] Use TLS (STARTTLS) before logging in")
}

func (ss *session) isClosing() bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.closing
}

// shutdown says BYE to the client: at once before login, and between two
// responses after it; then the session ends.
func (ss *session) shutdown() {
	ss.mu.Lock()
	ss.closing = true
	routed := ss.upConn != nil
	c := ss.conn
	ss.mu.Unlock()
	if !routed {
		// The front door notices between commands; a client that is silent
		// is woken by the deadline.
		c.SetReadDeadline(time.Now())
		return
	}
	ss.endWith("Server shutting down")
}

// endWith ends a logged-in session with "* BYE text", written between two
// responses: by the relay's writer for a routed session, by imapserver
// for a merged one (which owns that stream).
func (ss *session) endWith(text string) {
	ss.srv.mu.Lock()
	h := ss.srv.merged[ss]
	ss.srv.mu.Unlock()
	if h != nil {
		h.bye(ss.srv, text)
		return
	}
	ss.mu.Lock()
	ss.closing = true
	w := ss.w
	ss.mu.Unlock()
	w.writeLineThen([]byte("* BYE "+text+"\r\n"), ss.closeConns)
}

// forceClose ends the session now.
func (ss *session) forceClose() {
	ss.cancel()
	ss.closeConns()
}

func (ss *session) closeConns() {
	ss.closeOne.Do(func() {
		ss.mu.Lock()
		up := ss.upConn
		c := ss.conn
		ss.mu.Unlock()
		c.Close()
		if up != nil {
			up.Close()
		}
	})
}
