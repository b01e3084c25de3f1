package upstream

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"strings"
)

const (
	// maxLineLength bounds one line from the upstream, without CRLF.
	maxLineLength = 64 << 10
	// maxResponseSize bounds one response: its lines and the literals in
	// it. Nothing the login phase reads comes anywhere near it.
	maxResponseSize = 1 << 20
)

// response is one parsed server response. Only what the login phase needs
// is kept: status responses in full, data responses as raw text.
type response struct {
	tag      string // "*" untagged, "+" continuation request, else a command tag
	number   string // the number of "* 3 EXISTS"-style responses
	kind     string // upper case: OK NO BAD BYE PREAUTH, or a data name (CAPABILITY, ID, ...)
	code     string // status responses: the response code, upper case
	codeArgs string // status responses: the rest of the bracketed code
	openCode bool   // status responses: "[" with no "]" on the first line
	text     string // status responses and continuation requests: human text
	data     string // data responses: the first line after kind
}

func (r *response) isStatus() bool {
	switch r.kind {
	case "OK", "NO", "BAD", "BYE", "PREAUTH":
		return true
	}
	return false
}

// capabilities returns the capability list the response carries, as an
// untagged CAPABILITY response or a CAPABILITY response code, or nil.
func (r *response) capabilities() []string {
	switch {
	case r.tag == "*" && r.kind == "CAPABILITY":
		return strings.Fields(r.data)
	case r.isStatus() && r.code == "CAPABILITY" && !r.openCode:
		return strings.Fields(r.codeArgs)
	}
	return nil
}

// parseResponse parses the first line of a response, without CRLF.
func parseResponse(line []byte) (*response, error) {
	s := string(line)
	if s == "" {
		return nil, protocolError("empty line")
	}
	if s[0] == '+' {
		// continue-req = "+" SP (resp-text / base64); some servers omit SP.
		return &response{tag: "+", text: strings.TrimPrefix(s[1:], " ")}, nil
	}
	tag, rest, _ := strings.Cut(s, " ")
	if tag != "*" && !validTag(tag) {
		return nil, protocolError("bad tag")
	}
	r := &response{tag: tag}
	kind, rest, _ := strings.Cut(rest, " ")
	if tag == "*" && isDigits(kind) {
		r.number = kind
		kind, rest, _ = strings.Cut(rest, " ")
	}
	if !validAtom(kind) {
		return nil, protocolError("bad response name")
	}
	r.kind = strings.ToUpper(kind)
	if !r.isStatus() {
		if tag != "*" {
			return nil, protocolError("tagged response is not OK, NO or BAD")
		}
		r.data = rest
		return r, nil
	}
	if tag != "*" && (r.kind == "BYE" || r.kind == "PREAUTH") {
		return nil, protocolError("tagged " + r.kind)
	}
	if r.number != "" {
		return nil, protocolError("numbered status response")
	}
	if strings.HasPrefix(rest, "[") {
		inner, after, closed := strings.Cut(rest[1:], "]")
		r.openCode = !closed
		code, args, _ := strings.Cut(inner, " ")
		r.code, r.codeArgs = strings.ToUpper(code), args
		rest = strings.TrimPrefix(after, " ")
	}
	r.text = rest
	return r, nil
}

// validTag reports whether s is a tag: ASTRING-CHARs except "+".
func validTag(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '+' || (c != ']' && !isAtomChar(c)) {
			return false
		}
	}
	return true
}

func validAtom(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAtomChar(s[i]) {
			return false
		}
	}
	return true
}

func isAtomChar(c byte) bool {
	if c <= 0x20 || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '{', '%', '*', '"', '\\', ']':
		return false
	}
	return true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// trailingLiteral reports whether line ends with a literal announcement
// "{n}", "{n+}" or "~{n}", and its size.
func trailingLiteral(line []byte) (n int64, ok bool, err error) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false, nil
	}
	open := -1
	for i := len(line) - 2; i >= 0 && len(line)-i <= 14; i-- {
		if line[i] == '{' {
			open = i
			break
		}
	}
	if open < 0 {
		return 0, false, nil
	}
	digits := string(line[open+1 : len(line)-1])
	digits = strings.TrimSuffix(digits, "+")
	if !isDigits(digits) {
		return 0, false, nil
	}
	n, err = strconv.ParseInt(digits, 10, 64)
	if err != nil || n > maxResponseSize {
		return 0, false, protocolError("literal too large")
	}
	return n, true, nil
}

// readLine reads one line of at most limit bytes (CRLF excluded) and
// returns it without its line ending. A bare LF is accepted as well.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > limit+2 {
			return nil, protocolError("line too long")
		}
		line = append(line, chunk...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF && len(line) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) > limit {
		return nil, protocolError("line too long")
	}
	return line, nil
}

// readResponse reads one whole response: its first line, and, where the
// syntax allows literals, every literal and continuation line after it.
// Literal contents are skipped, not kept: nothing the login phase acts on
// lives in them. Human text of status responses may end in something like
// "{5}" and is not a literal unless a response code is still open.
func readResponse(br *bufio.Reader) (*response, error) {
	line, err := readLine(br, maxLineLength)
	if err != nil {
		return nil, err
	}
	r, err := parseResponse(line)
	if err != nil {
		return nil, err
	}
	if r.tag == "+" || (r.isStatus() && !r.openCode) {
		return r, nil
	}
	budget := int64(maxResponseSize - len(line))
	for {
		n, ok, err := trailingLiteral(line)
		if err != nil {
			return nil, err
		}
		if !ok {
			return r, nil
		}
		if n > budget {
			return nil, protocolError("response too large")
		}
		if _, err := io.CopyN(io.Discard, br, n); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		budget -= n
		line, err = readLine(br, int(min(budget, maxLineLength)))
		if err != nil {
			return nil, err
		}
		budget -= int64(len(line))
	}
}
