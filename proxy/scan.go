package proxy

import "bytes"

// IMAP framing, followed cheaply on the relay's hot path: a stream is lines
// of text, and a line that ends in "{n}" (or "{n+}", "~{n}") is followed by n
// bytes of literal payload that are not text. Written by hand because no
// library tracks IMAP framing without parsing (and copying) whole responses.

// maxLiteralMarker is the longest literal marker, "~{" + 19 digits + "+}".
const maxLiteralMarker = 23

// parseLiteralMarker looks at a line without its line ending and returns the
// size of the literal announced at its end, whether it is non-synchronizing
// ("{n+}") and the offset of the closing brace.
func parseLiteralMarker(line []byte) (size int64, plus bool, brace int, ok bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false, 0, false
	}
	brace = len(line) - 1
	end := brace
	if line[end-1] == '+' {
		plus = true
		end--
	}
	start := end
	for start > 0 && line[start-1] >= '0' && line[start-1] <= '9' && end-start < 19 {
		start--
	}
	if start == end || start == 0 || line[start-1] != '{' {
		return 0, false, 0, false
	}
	for _, c := range line[start:end] {
		size = size*10 + int64(c-'0')
	}
	if size < 0 { // overflow of 19 digits
		return 0, false, 0, false
	}
	return size, plus, brace, true
}

// trimEOL removes a trailing "\r\n" or "\n".
func trimEOL(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r"))
}

// responseScanner follows the framing of the upstream's responses. It keeps
// the last bytes of the current line so that a literal marker split across
// reads is still seen, and the first bytes of each line so that the guard
// can learn of continuation requests and tagged completions.
type responseScanner struct {
	literal int64 // payload bytes of the current literal still to come
	midLine bool  // inside the text of a line
	tail    [maxLiteralMarker + 2]byte
	tailLen int
	head    [64]byte
	headLen int
	// onLine, when set, is called with the first bytes of every complete
	// response line (outside literals).
	onLine func(head []byte)
	// stopped is set (by onLine) when the stream can no longer be followed,
	// after COMPRESS: the rest is passed on without looking.
	stopped bool
}

// scan advances over b and returns the offset just after the last point in
// b where the stream is between two responses (-1 if there is none), and
// whether the end of b is such a point.
func (s *responseScanner) scan(b []byte) (lastBoundary int, atEnd bool) {
	lastBoundary = -1
	if s.stopped {
		return -1, false
	}
	i := 0
	for i < len(b) {
		if s.literal > 0 {
			k := int64(len(b) - i)
			if k > s.literal {
				k = s.literal
			}
			s.literal -= k
			i += int(k)
			continue
		}
		if !s.midLine {
			s.midLine = true
			s.tailLen = 0
			s.headLen = 0
		}
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			s.remember(b[i:])
			i = len(b)
			break
		}
		s.remember(b[i : i+j])
		if n, _, _, ok := parseLiteralMarker(trimEOL(s.tail[:s.tailLen])); ok {
			// The response's text goes on after the literal.
			s.literal = n
			s.tailLen = 0
		} else {
			s.midLine = false
			lastBoundary = i + j + 1
			if s.onLine != nil {
				s.onLine(s.head[:s.headLen])
				if s.stopped {
					return lastBoundary, false
				}
			}
		}
		i += j + 1
	}
	return lastBoundary, !s.midLine && s.literal == 0
}

// remember records the start and the end of the current line's text.
func (s *responseScanner) remember(seg []byte) {
	if s.headLen < len(s.head) {
		s.headLen += copy(s.head[s.headLen:], seg)
	}
	if len(seg) >= len(s.tail) {
		s.tailLen = copy(s.tail[:], seg[len(seg)-len(s.tail):])
		return
	}
	if s.tailLen+len(seg) > len(s.tail) {
		drop := s.tailLen + len(seg) - len(s.tail)
		copy(s.tail[:], s.tail[drop:s.tailLen])
		s.tailLen -= drop
	}
	s.tailLen += copy(s.tail[s.tailLen:], seg)
}
