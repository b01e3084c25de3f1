package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/emersion/go-sasl"
)

// XOAUTH2 is the name of Google's SASL mechanism for bearer tokens, which
// go-sasl lacks. OAUTHBEARER (RFC 7628) is go-sasl's NewOAuthBearerServer,
// best wrapped by NewOAuthBearerServer here.
const XOAUTH2 = "XOAUTH2"

// maxXOAUTH2 bounds an XOAUTH2 client response: a bearer token and a user
// name with the fixed parts around them.
const maxXOAUTH2 = MaxBearerTokenLength + 1024

// ErrMalformedSASL means a SASL client response did not follow its
// mechanism's syntax. The client gets a protocol error, not an
// authentication failure.
var ErrMalformedSASL = errors.New("auth: malformed SASL response")

// ParseXOAUTH2 reads an XOAUTH2 client response,
// "user=" user "\x01auth=Bearer " token "\x01\x01", strictly: nothing
// else is accepted but the case of "Bearer". The user must be non-empty
// without control characters, the token a non-empty RFC 6750 b64token,
// the whole at most MaxBearerTokenLength plus 1 KiB. Errors wrap
// ErrMalformedSASL and never contain the token.
func ParseXOAUTH2(resp []byte) (user, token string, err error) {
	if len(resp) > maxXOAUTH2 {
		return "", "", fmt.Errorf("%w: XOAUTH2 response longer than %d bytes", ErrMalformedSASL, maxXOAUTH2)
	}
	rest, ok := bytes.CutPrefix(resp, []byte("user="))
	if !ok {
		return "", "", fmt.Errorf("%w: XOAUTH2 response does not start with user=", ErrMalformedSASL)
	}
	rest, ok = bytes.CutSuffix(rest, []byte("\x01\x01"))
	if !ok {
		return "", "", fmt.Errorf("%w: XOAUTH2 response does not end with two ^A", ErrMalformedSASL)
	}
	u, auth, ok := bytes.Cut(rest, []byte("\x01"))
	if !ok {
		return "", "", fmt.Errorf("%w: XOAUTH2 response has no auth field", ErrMalformedSASL)
	}
	const scheme = "auth=bearer "
	if len(auth) < len(scheme) || !bytes.EqualFold(auth[:len(scheme)], []byte(scheme)) {
		return "", "", fmt.Errorf("%w: XOAUTH2 auth field is not a Bearer token", ErrMalformedSASL)
	}
	tok := auth[len(scheme):]
	if len(u) == 0 {
		return "", "", fmt.Errorf("%w: XOAUTH2 user is empty", ErrMalformedSASL)
	}
	for _, c := range u {
		if c < 0x20 || c == 0x7f {
			return "", "", fmt.Errorf("%w: XOAUTH2 user has control characters", ErrMalformedSASL)
		}
	}
	if !isB64Token(tok) {
		return "", "", fmt.Errorf("%w: XOAUTH2 token is empty or has characters outside b64token", ErrMalformedSASL)
	}
	return string(u), string(tok), nil
}

// isB64Token reports whether b is an RFC 6750 b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(b []byte) bool {
	i := 0
	for ; i < len(b); i++ {
		c := b[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(b); i++ {
		if b[i] != '=' {
			return false
		}
	}
	return true
}

// XOAUTH2Response returns the XOAUTH2 client response for user and token,
// for logging in to an upstream. Neither may contain ^A.
func XOAUTH2Response(user, token string) []byte {
	return []byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01")
}

// XOAUTH2ErrorChallenge returns the JSON that an XOAUTH2 server sends as
// its last challenge before failing, in Google's form:
// {"status":"401","schemes":"bearer","scope":"..."}, scope left out when
// empty. The client answers it with an empty response.
func XOAUTH2ErrorChallenge(status, scope string) []byte {
	b, _ := json.Marshal(struct {
		Status  string `json:"status"`
		Schemes string `json:"schemes"`
		Scope   string `json:"scope,omitempty"`
	}{status, "bearer", scope})
	return b
}

// OAuthBearerErrorChallenge returns the RFC 7628 server error JSON for
// status, such as "invalid_token": {"status":"invalid_token"}. go-sasl's
// OAUTHBEARER server marshals the *sasl.OAuthBearerError that its
// authenticator returns instead; this is for other uses.
func OAuthBearerErrorChallenge(status string) []byte {
	b, _ := json.Marshal(struct {
		Status string `json:"status"`
	}{status})
	return b
}

// NewXOAUTH2Server returns the server side of XOAUTH2. authenticate
// checks the user and token (OAuthVerifier.Verify and a comparison of its
// user with the given one). When it fails with ErrInvalidToken or
// ErrInvalidCredentials, the client gets XOAUTH2ErrorChallenge("401",
// scope) and, after its empty response, the error; any other error (such
// as ErrOAuthUnavailable) ends the exchange at once.
func NewXOAUTH2Server(authenticate func(user, token string) error, scope string) sasl.Server {
	return &xoauth2Server{authenticate: authenticate, scope: scope}
}

type xoauth2Server struct {
	authenticate func(user, token string) error
	scope        string
	started      bool
	failErr      error // set after an error challenge
	done         bool
}

// Next implements sasl.Server.
func (s *xoauth2Server) Next(response []byte) (challenge []byte, done bool, err error) {
	switch {
	case s.done:
		return nil, true, sasl.ErrUnexpectedClientResponse
	case s.failErr != nil:
		// Whatever the client answered to the error challenge, the
		// exchange fails with the reason already known.
		s.done = true
		return nil, true, s.failErr
	case response == nil && !s.started:
		// No initial response: ask for it with an empty challenge.
		s.started = true
		return []byte{}, false, nil
	}
	s.started = true
	user, token, err := ParseXOAUTH2(response)
	if err != nil {
		s.done = true
		return nil, true, err
	}
	if err := s.authenticate(user, token); err != nil {
		if errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrInvalidCredentials) {
			s.failErr = err
			return XOAUTH2ErrorChallenge("401", s.scope), false, nil
		}
		s.done = true
		return nil, true, err
	}
	s.done = true
	return nil, true, nil
}

// NewOAuthBearerServer returns go-sasl's OAUTHBEARER server (RFC 7628),
// guarded against a panic in it: after sending an error challenge, it
// indexes the client's answer without checking its length, so an empty
// answer (the IMAP line "" or "=") would crash the connection's goroutine.
// The guard turns an empty answer into the RFC's ^A, which ends the
// exchange with the authenticator's error.
func NewOAuthBearerServer(authenticate sasl.OAuthBearerAuthenticator) sasl.Server {
	return &oauthBearerGuard{inner: sasl.NewOAuthBearerServer(authenticate)}
}

type oauthBearerGuard struct {
	inner  sasl.Server
	failed bool // the inner server sent an error challenge
}

// Next implements sasl.Server.
func (g *oauthBearerGuard) Next(response []byte) (challenge []byte, done bool, err error) {
	if g.failed && len(response) == 0 {
		response = []byte{0x01}
	}
	challenge, done, err = g.inner.Next(response)
	if !done && err == nil && len(challenge) > 0 {
		g.failed = true
	}
	return challenge, done, err
}
