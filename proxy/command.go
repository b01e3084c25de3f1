package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The front door reads whole commands, literals included, before it acts on
// them. go-imap's server cannot be used here: the front door must hand the
// raw connection to the route-mode relay after login, and must enforce its
// own pre-auth limits. The grammar needed before login is small (tag,
// command name, atoms, quoted strings, literals, parenthesised lists), so it
// is written by hand.

// tokenKind is the kind of one command argument.
type tokenKind int

const (
	tokAtom tokenKind = iota
	tokQuoted
	tokLiteral
	tokListStart
	tokListEnd
)

type token struct {
	kind  tokenKind
	value string
}

// isString reports whether t is an IMAP astring (atom, quoted or literal).
func (t token) isString() bool { return t.kind <= tokLiteral }

// isNIL reports whether t is the atom NIL.
func (t token) isNIL() bool { return t.kind == tokAtom && strings.EqualFold(t.value, "NIL") }

// command is one parsed client command.
type command struct {
	tag  string
	name string // upper case
	args []token
}

// protocolError is a client error that gets a BAD response; fatal errors
// also end the connection.
type protocolError struct {
	tag   string // "*" when the tag is unknown
	code  string // response code without brackets, may be empty
	text  string
	fatal bool
}

func (e *protocolError) Error() string { return e.text }

// commandReader reads commands from a buffered client connection.
type commandReader struct {
	r          *bufio.Reader
	maxLine    int
	maxLiteral int
	// cont is called before a synchronizing literal is read; it writes the
	// continuation request to the client.
	cont func() error
	// literalPlus is whether non-synchronizing literals are accepted.
	literalPlus bool
}

var errLineTooLong = errors.New("line too long")

// readLine reads one line without its CRLF (or LF), at most maxLine bytes.
func (cr *commandReader) readLine() ([]byte, error) {
	var line []byte
	for {
		frag, err := cr.r.ReadSlice('\n')
		if len(line)+len(frag) > cr.maxLine+2 {
			return nil, errLineTooLong
		}
		line = append(line, frag...)
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
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return line, nil
}

// readCommand reads one complete command. A *protocolError is returned for
// malformed input; other errors are I/O errors.
func (cr *commandReader) readCommand() (*command, error) {
	line, err := cr.readLine()
	if err == errLineTooLong {
		return nil, &protocolError{tag: "*", text: "Command line too long", fatal: true}
	}
	if err != nil {
		return nil, err
	}
	cmd := &command{}
	p := &lineParser{line: line}
	cmd.tag = p.atom()
	if cmd.tag == "" || strings.ContainsAny(cmd.tag, "+") {
		return nil, &protocolError{tag: "*", text: "Missing or invalid tag"}
	}
	if !p.sp() {
		return nil, &protocolError{tag: cmd.tag, text: "Missing command"}
	}
	cmd.name = strings.ToUpper(p.atom())
	if cmd.name == "" {
		return nil, &protocolError{tag: cmd.tag, text: "Missing command"}
	}
	if p.pos < len(p.line) && (!p.sp() || p.pos == len(p.line)) {
		return nil, &protocolError{tag: cmd.tag, text: "Invalid command syntax"}
	}
	first := true
	for {
		lit, err := p.args(&cmd.args, first)
		first = false
		if err != nil {
			return nil, &protocolError{tag: cmd.tag, text: err.Error()}
		}
		if lit == nil {
			return cmd, nil
		}
		if lit.size > int64(cr.maxLiteral) {
			// A synchronizing literal is refused before the client sends it;
			// a non-synchronizing one is already on its way and cannot be
			// skipped safely, so the connection ends.
			return nil, &protocolError{tag: cmd.tag, code: "TOOBIG", text: "Literal too large before login", fatal: lit.plus}
		}
		if lit.plus && !cr.literalPlus {
			return nil, &protocolError{tag: cmd.tag, text: "Non-synchronizing literals are not supported", fatal: true}
		}
		if !lit.plus {
			if err := cr.cont(); err != nil {
				return nil, err
			}
		}
		buf := make([]byte, lit.size)
		if _, err := io.ReadFull(cr.r, buf); err != nil {
			return nil, err
		}
		cmd.args = append(cmd.args, token{kind: tokLiteral, value: string(buf)})
		line, err = cr.readLine()
		if err == errLineTooLong {
			return nil, &protocolError{tag: "*", text: "Command line too long", fatal: true}
		}
		if err != nil {
			return nil, err
		}
		p = &lineParser{line: line}
	}
}

// literalSpec is a literal announced at the end of a line.
type literalSpec struct {
	size int64
	plus bool
}

// lineParser parses the text of one line.
type lineParser struct {
	line  []byte
	pos   int
	depth int
}

func (p *lineParser) sp() bool {
	if p.pos < len(p.line) && p.line[p.pos] == ' ' {
		p.pos++
		return true
	}
	return false
}

// isAtomChar reports whether c may appear in an atom (RFC 9051 ATOM-CHAR,
// plus ']' which astrings allow).
func isAtomChar(c byte) bool {
	switch c {
	case '(', ')', '{', ' ', '%', '*', '"', '\\':
		return false
	}
	return c > 0x20 && c < 0x7f
}

func (p *lineParser) atom() string {
	start := p.pos
	for p.pos < len(p.line) && isAtomChar(p.line[p.pos]) {
		p.pos++
	}
	return string(p.line[start:p.pos])
}

// args parses space-separated arguments until the end of the line. When the
// line ends with a literal announcement it returns its spec.
// first is whether the line starts with an argument rather than the space
// before one.
func (p *lineParser) args(out *[]token, first bool) (*literalSpec, error) {
	for p.pos < len(p.line) {
		c := p.line[p.pos]
		if !first && c != ')' {
			if !p.sp() {
				return nil, fmt.Errorf("Expected space at column %d", p.pos+1)
			}
			if p.pos >= len(p.line) {
				return nil, errors.New("Trailing space")
			}
			c = p.line[p.pos]
		}
		first = false
		switch {
		case c == '(':
			p.pos++
			p.depth++
			*out = append(*out, token{kind: tokListStart})
			first = true
		case c == ')':
			if p.depth == 0 {
				return nil, errors.New("Unbalanced parenthesis")
			}
			p.pos++
			p.depth--
			*out = append(*out, token{kind: tokListEnd})
		case c == '"':
			s, err := p.quoted()
			if err != nil {
				return nil, err
			}
			*out = append(*out, token{kind: tokQuoted, value: s})
		case c == '{' || c == '~':
			return p.literal()
		default:
			a := p.atom()
			if a == "" {
				return nil, fmt.Errorf("Unexpected character at column %d", p.pos+1)
			}
			*out = append(*out, token{kind: tokAtom, value: a})
		}
	}
	if p.depth != 0 {
		return nil, errors.New("Unbalanced parenthesis")
	}
	return nil, nil
}

func (p *lineParser) quoted() (string, error) {
	p.pos++ // opening quote
	var sb strings.Builder
	for p.pos < len(p.line) {
		c := p.line[p.pos]
		p.pos++
		switch c {
		case '"':
			return sb.String(), nil
		case '\\':
			if p.pos >= len(p.line) {
				return "", errors.New("Unterminated quoted string")
			}
			c = p.line[p.pos]
			if c != '"' && c != '\\' {
				return "", errors.New("Invalid escape in quoted string")
			}
			p.pos++
		case '\r', '\n', 0:
			return "", errors.New("Invalid character in quoted string")
		}
		sb.WriteByte(c)
	}
	return "", errors.New("Unterminated quoted string")
}

// literal parses "{n}", "{n+}" or "~{n}" at the end of the line.
func (p *lineParser) literal() (*literalSpec, error) {
	rest := p.line[p.pos:]
	rest = bytes.TrimPrefix(rest, []byte("~"))
	if len(rest) < 3 || rest[0] != '{' || rest[len(rest)-1] != '}' {
		return nil, errors.New("Invalid literal")
	}
	digits := rest[1 : len(rest)-1]
	plus := bytes.HasSuffix(digits, []byte("+"))
	digits = bytes.TrimSuffix(digits, []byte("+"))
	if len(digits) == 0 || len(digits) > 19 {
		return nil, errors.New("Invalid literal size")
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil || n < 0 {
		return nil, errors.New("Invalid literal size")
	}
	p.pos = len(p.line)
	return &literalSpec{size: n, plus: plus}, nil
}
