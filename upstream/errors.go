package upstream

import (
	"errors"
	"strings"
)

// ErrAuthFailed means the upstream refused the credentials. Callers count
// it as a failed login of the user.
var ErrAuthFailed = errors.New("authentication failed")

// ErrUnavailable means the upstream could not be reached or used: dial or
// TLS failure, timeout, BYE, closed connection, protocol garbage, or a
// temporary refusal such as NO [UNAVAILABLE]. It is never the user's fault.
var ErrUnavailable = errors.New("upstream unavailable")

// Error is the error returned by this package. Err wraps ErrAuthFailed or
// ErrUnavailable (and, where there is one, the underlying cause such as a
// context or network error), so callers test it with errors.Is.
type Error struct {
	// Upstream is Options.Name of the upstream.
	Upstream string
	// Op is the step that failed: "dial", "tls", "greeting", "starttls",
	// "capability", "id", "login" or "authenticate".
	Op string
	// Code is the upstream's response code, upper case, if it sent one
	// (for example "AUTHENTICATIONFAILED" or "UNAVAILABLE").
	Code string
	// Text is the upstream's human-readable text, if any. It never
	// contains the password.
	Text string
	// Err wraps ErrAuthFailed or ErrUnavailable.
	Err error
}

// Error formats the error as "upstream NAME: OP: [CODE] TEXT: ERR".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("upstream ")
	b.WriteString(e.Upstream)
	b.WriteString(": ")
	b.WriteString(e.Op)
	if e.Code != "" || e.Text != "" {
		b.WriteString(":")
		if e.Code != "" {
			b.WriteString(" [" + e.Code + "]")
		}
		if e.Text != "" {
			b.WriteString(" " + e.Text)
		}
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns Err.
func (e *Error) Unwrap() error { return e.Err }

// protocolError is a violation of the IMAP syntax or of the exchange we
// expect. It always ends the connection.
type protocolError string

func (e protocolError) Error() string { return "protocol error: " + string(e) }

// redact removes secrets from text the upstream sent back.
func redact(text string, secrets ...string) string {
	for _, s := range secrets {
		if s != "" {
			text = strings.ReplaceAll(text, s, "***")
		}
	}
	return text
}
