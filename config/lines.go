package config

import (
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// keyPath names one place in the configuration, as error messages print it:
// "listen[1].tls", "limits.idle_timeout", "route[0].password". Each element
// is either a key segment in TOML's own quoting (bare when it can be) or an
// index written "[n]"; a segment that looks like "[n]" would be quoted, so the
// two cannot be confused.
type keyPath []string

// pathOf builds a keyPath: a string is a key segment, an int an index.
func pathOf(parts ...any) keyPath {
	var p keyPath
	for _, part := range parts {
		switch v := part.(type) {
		case string:
			p = append(p, toml.Key{v}.String())
		case int:
			p = append(p, "["+strconv.Itoa(v)+"]")
		}
	}
	return p
}

// with returns a new path with elems appended; p itself is not changed.
func (p keyPath) with(parts ...any) keyPath {
	q := make(keyPath, 0, len(p)+len(parts))
	return append(append(q, p...), pathOf(parts...)...)
}

func (p keyPath) String() string {
	var b strings.Builder
	for i, e := range p {
		if i > 0 && !strings.HasPrefix(e, "[") {
			b.WriteByte('.')
		}
		b.WriteString(e)
	}
	return b.String()
}

// lineIndex maps key paths to the line they are written on.
//
// BurntSushi/toml keeps key positions private, and all elements of an array
// of tables share one key name there, so this package locates keys itself
// with the small scanner below, written by hand for this purpose. It runs
// only on text the toml parser has accepted, so it is lenient; on any input
// it must terminate without panicking.
type lineIndex struct {
	lines map[string]int
}

// line returns the line of p, else of its nearest enclosing table or key
// that is written in the file, else 0.
func (x *lineIndex) line(p keyPath) int {
	if x == nil {
		return 0
	}
	for n := len(p); n > 0; n-- {
		if l, ok := x.lines[p[:n].String()]; ok {
			return l
		}
	}
	return 0
}

// indexLines scans TOML text and records the line of every table header,
// array-of-tables element, key (dotted keys and keys in inline tables
// included) and array element.
func indexLines(src []byte) *lineIndex {
	s := &lineScanner{
		src:    src,
		line:   1,
		lines:  make(map[string]int),
		arrays: make(map[string]int),
	}
	s.document()
	return &lineIndex{lines: s.lines}
}

type lineScanner struct {
	src    []byte
	pos    int
	line   int
	lines  map[string]int
	arrays map[string]int // array-of-tables path → elements seen so far
}

func (s *lineScanner) peek(off int) byte {
	if s.pos+off < len(s.src) {
		return s.src[s.pos+off]
	}
	return 0
}

// record notes the line of p and of each of its prefixes longer than from
// elements, keeping the first line seen for each.
func (s *lineScanner) record(p keyPath, from, line int) {
	for n := max(from, 1); n <= len(p); n++ {
		k := p[:n].String()
		if _, ok := s.lines[k]; !ok {
			s.lines[k] = line
		}
	}
}

func (s *lineScanner) document() {
	var table keyPath
	for s.pos < len(s.src) {
		s.skipBlanks()
		switch c := s.peek(0); {
		case s.pos >= len(s.src):
		case c == '\n':
			s.pos++
			s.line++
		case c == '#':
			s.skipComment()
		case c == '[':
			line := s.line
			array := s.peek(1) == '['
			s.pos++
			if array {
				s.pos++
			}
			table = s.header(s.keySegments(), array)
			s.record(table, 0, line)
			s.skipBlanks()
			for s.peek(0) == ']' {
				s.pos++
			}
		default:
			line := s.line
			segs := s.keySegments()
			s.skipBlanks()
			if len(segs) == 0 || s.peek(0) != '=' {
				s.skipLine() // not a key: resynchronize on the next line
				continue
			}
			s.pos++
			p := table.with(segs...)
			s.record(p, len(table)+1, line)
			s.value(p)
		}
	}
}

// header resolves a table header's segments to a path, adding the current
// index after every array of tables it passes through, and a new index when
// the header itself is [[...]].
func (s *lineScanner) header(segs []any, array bool) keyPath {
	var p keyPath
	for i, seg := range segs {
		p = p.with(seg)
		k := p.String()
		if array && i == len(segs)-1 {
			n := s.arrays[k]
			s.arrays[k] = n + 1
			p = p.with(n)
		} else if n := s.arrays[k]; n > 0 {
			p = p.with(n - 1)
		}
	}
	return p
}

// keySegments reads a possibly dotted key and returns its segments (as
// strings, typed any for keyPath.with).
func (s *lineScanner) keySegments() []any {
	var segs []any
	for {
		s.skipBlanks()
		seg, ok := s.keySegment()
		if !ok {
			return segs
		}
		segs = append(segs, seg)
		s.skipBlanks()
		if s.peek(0) != '.' {
			return segs
		}
		s.pos++
	}
}

func (s *lineScanner) keySegment() (string, bool) {
	start := s.pos
	switch s.peek(0) {
	case '"', '\'':
		s.skipString()
		raw := string(s.src[start:s.pos])
		if len(raw) < 2 {
			return "", false
		}
		if raw[0] == '\'' {
			return raw[1 : len(raw)-1], true
		}
		if v, err := strconv.Unquote(raw); err == nil {
			return v, true
		}
		return raw[1 : len(raw)-1], true
	}
	for s.pos < len(s.src) && isBareKeyByte(s.src[s.pos]) {
		s.pos++
	}
	return string(s.src[start:s.pos]), s.pos > start
}

func isBareKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// value skips one value, recording the keys of inline tables and the
// elements of arrays under p.
func (s *lineScanner) value(p keyPath) {
	s.skipBlanks()
	switch s.peek(0) {
	case '"', '\'':
		s.skipString()
	case '[':
		s.pos++
		for i := 0; ; {
			s.skipSpace()
			switch s.peek(0) {
			case 0:
				return
			case ']':
				s.pos++
				return
			case ',':
				s.pos++
				continue
			}
			start, elem := s.pos, p.with(i)
			s.record(elem, len(elem), s.line)
			s.value(elem)
			if s.pos == start {
				s.pos++ // stray byte: keep moving
			}
			i++
		}
	case '{':
		s.pos++
		for {
			s.skipSpace()
			switch s.peek(0) {
			case 0:
				return
			case '}':
				s.pos++
				return
			case ',':
				s.pos++
				continue
			}
			line := s.line
			segs := s.keySegments()
			s.skipBlanks()
			if len(segs) == 0 || s.peek(0) != '=' {
				s.pos++
				continue
			}
			s.pos++
			kp := p.with(segs...)
			s.record(kp, len(p)+1, line)
			s.value(kp)
		}
	default:
		for s.pos < len(s.src) && !strings.ContainsRune(",]}#\n", rune(s.src[s.pos])) {
			s.pos++
		}
	}
}

// skipString skips a basic, literal or multi-line string starting at pos.
func (s *lineScanner) skipString() {
	defer func() { s.pos = min(s.pos, len(s.src)) }()
	q := s.peek(0)
	if s.peek(1) == q && s.peek(2) == q {
		s.pos += 3
		for s.pos < len(s.src) {
			c := s.src[s.pos]
			switch {
			case c == '\\' && q == '"':
				if s.peek(1) == '\n' {
					s.line++
				}
				s.pos += 2
			case c == q && s.peek(1) == q && s.peek(2) == q:
				s.pos += 3
				for i := 0; i < 2 && s.peek(0) == q; i++ { // """"" ends with quotes
					s.pos++
				}
				return
			default:
				if c == '\n' {
					s.line++
				}
				s.pos++
			}
		}
		return
	}
	s.pos++
	for s.pos < len(s.src) {
		c := s.src[s.pos]
		switch {
		case c == '\n':
			return
		case c == '\\' && q == '"':
			s.pos++
			if s.peek(0) != '\n' {
				s.pos++
			}
		case c == q:
			s.pos++
			return
		default:
			s.pos++
		}
	}
}

// skipBlanks skips spaces, tabs and carriage returns (and a byte order mark).
func (s *lineScanner) skipBlanks() {
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case ' ', '\t', '\r':
			s.pos++
		case 0xEF:
			if s.peek(1) == 0xBB && s.peek(2) == 0xBF {
				s.pos += 3
				continue
			}
			return
		default:
			return
		}
	}
}

// skipSpace skips blanks, newlines and comments, as inside arrays.
func (s *lineScanner) skipSpace() {
	for {
		s.skipBlanks()
		switch s.peek(0) {
		case '\n':
			s.pos++
			s.line++
		case '#':
			s.skipComment()
		default:
			return
		}
	}
}

func (s *lineScanner) skipComment() {
	for s.pos < len(s.src) && s.src[s.pos] != '\n' {
		s.pos++
	}
}

func (s *lineScanner) skipLine() {
	s.skipComment()
}
