package upstream

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/emersion/go-sasl"
)

// Login authenticates with cr. It uses LOGIN, with each argument a quoted
// string or, for anything else, a literal (non-synchronizing with
// LITERAL+, or LITERAL- up to 4096 bytes; synchronizing otherwise). When
// the upstream advertises LOGINDISABLED it uses AUTHENTICATE PLAIN
// instead, with an initial response if SASL-IR is advertised.
//
// After success, Capabilities returns the post-login list, taken from the
// tagged OK's CAPABILITY code, else from an untagged CAPABILITY sent
// during the command, else from an explicit CAPABILITY command.
//
// A NO answer wraps ErrAuthFailed, except that the response codes
// UNAVAILABLE, SERVERBUG, INUSE and LIMIT (temporary or server-side
// trouble) wrap ErrUnavailable; the code and text are in the *Error. A BAD
// answer and every transport or protocol failure wrap ErrUnavailable.
// After a NO or BAD Login may be tried again.
func (c *Conn) Login(ctx context.Context, cr Credentials) error {
	op := "login"
	if hasCap(c.caps, "LOGINDISABLED") {
		op = "authenticate"
	}
	if c.loggedIn {
		return &Error{Upstream: c.opts.Name, Op: op, Err: fmt.Errorf("%w: already logged in", ErrUnavailable)}
	}
	// Neither a quoted string, a literal (CHAR8) nor PLAIN can carry NUL.
	if strings.ContainsRune(cr.Username, 0) || strings.ContainsRune(cr.Password, 0) {
		return &Error{Upstream: c.opts.Name, Op: op, Err: fmt.Errorf("%w: credentials contain NUL", ErrAuthFailed)}
	}
	if cr.XOAUTH2 {
		op = "xoauth2"
	}
	var gotCaps bool
	err := c.step(ctx, op, c.opts.CommandTimeout, func() error {
		var parts [][]byte
		var secrets []string
		tag := c.nextTag()
		optional := false
		switch {
		case op == "xoauth2":
			if !hasCap(c.caps, "AUTH=XOAUTH2") {
				return &Error{Upstream: c.opts.Name, Op: op,
					Err: fmt.Errorf("%w: upstream does not offer AUTH=XOAUTH2", ErrUnavailable)}
			}
			var ir string
			parts, ir = c.xoauth2Command(tag, cr)
			secrets = []string{cr.Password, ir}
			optional = true
		case op == "login":
			parts = c.loginCommand(tag, cr)
			secrets = []string{cr.Password}
		default:
			if !hasCap(c.caps, "AUTH=PLAIN") {
				return &Error{Upstream: c.opts.Name, Op: op,
					Err: fmt.Errorf("%w: upstream has LOGINDISABLED and no AUTH=PLAIN", ErrUnavailable)}
			}
			var ir string
			parts, ir = c.authenticateCommand(tag, cr)
			secrets = []string{cr.Password, ir}
		}
		r, caps, err := c.exchangeParts(tag, optional, parts)
		if err != nil {
			return err
		}
		if r.kind != "OK" {
			return c.loginError(op, r, secrets)
		}
		if rc := r.capabilities(); rc != nil {
			caps = rc
		}
		if caps != nil {
			c.caps, gotCaps = caps, true
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.loggedIn = true
	if !gotCaps {
		return c.capability(ctx)
	}
	return nil
}

// loginError turns a tagged NO or BAD into an *Error.
func (c *Conn) loginError(op string, r *response, secrets []string) error {
	e := &Error{Upstream: c.opts.Name, Op: op, Code: r.code, Text: redact(r.text, secrets...)}
	switch {
	case r.kind == "BAD":
		e.Err = fmt.Errorf("%w: command rejected as BAD", ErrUnavailable)
	case r.code == "UNAVAILABLE", r.code == "SERVERBUG", r.code == "INUSE", r.code == "LIMIT":
		e.Err = ErrUnavailable
	default:
		e.Err = ErrAuthFailed
	}
	return e
}

// loginCommand builds "tag LOGIN user pass" as parts for exchange: one
// part, unless a synchronizing literal needs a continuation request.
func (c *Conn) loginCommand(tag string, cr Credentials) [][]byte {
	var parts [][]byte
	b := []byte(tag + " LOGIN")
	for _, s := range []string{cr.Username, cr.Password} {
		b = append(b, ' ')
		if q, ok := QuoteString(s); ok {
			b = append(b, q...)
			continue
		}
		if hasCap(c.caps, "LITERAL+") || (hasCap(c.caps, "LITERAL-") && len(s) <= 4096) {
			b = append(b, "{"+strconv.Itoa(len(s))+"+}\r\n"...)
			b = append(b, s...)
			continue
		}
		b = append(b, "{"+strconv.Itoa(len(s))+"}\r\n"...)
		parts = append(parts, b)
		b = []byte(s)
	}
	b = append(b, "\r\n"...)
	return append(parts, b)
}

// authenticateCommand builds AUTHENTICATE PLAIN as parts for exchange,
// and returns the base64 response, a secret too.
func (c *Conn) authenticateCommand(tag string, cr Credentials) ([][]byte, string) {
	// PLAIN's Start cannot fail; the NUL check was done by Login.
	_, ir, _ := sasl.NewPlainClient("", cr.Username, cr.Password).Start()
	enc := base64.StdEncoding.EncodeToString(ir)
	if hasCap(c.caps, "SASL-IR") {
		return [][]byte{[]byte(tag + " AUTHENTICATE PLAIN " + enc + "\r\n")}, enc
	}
	return [][]byte{[]byte(tag + " AUTHENTICATE PLAIN\r\n"), []byte(enc + "\r\n")}, enc
}

// xoauth2Command builds AUTHENTICATE XOAUTH2 as parts for exchangeParts:
// the initial response (inline with SASL-IR, else after a continuation),
// then the empty response a server's error challenge asks for. It returns
// the base64 response, a secret too.
func (c *Conn) xoauth2Command(tag string, cr Credentials) ([][]byte, string) {
	// The XOAUTH2 initial response; go-sasl has no XOAUTH2 client.
	ir := "user=" + cr.Username + "\x01auth=Bearer " + cr.Password + "\x01\x01"
	enc := base64.StdEncoding.EncodeToString([]byte(ir))
	if hasCap(c.caps, "SASL-IR") {
		return [][]byte{[]byte(tag + " AUTHENTICATE XOAUTH2 " + enc + "\r\n"), []byte("\r\n")}, enc
	}
	return [][]byte{[]byte(tag + " AUTHENTICATE XOAUTH2\r\n"), []byte(enc + "\r\n"), []byte("\r\n")}, enc
}
