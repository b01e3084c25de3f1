package proxy

import (
	"bufio"
	"bytes"
	"strings"
	"testing"
)

// FuzzCommandReader feeds arbitrary bytes to the front door's parser: it
// must never panic and never accept more than its limits.
func FuzzCommandReader(f *testing.F) {
	for _, s := range []string{
		"a LOGIN alice secret\r\n",
		"a LOGIN {5}\r\nalice {6+}\r\nsecret\r\n",
		"a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n",
		"a ID (\"name\" \"x\" \"version\" NIL)\r\n",
		"a LOGIN \"al\\\"ice\" \"p\\\\w\"\r\n",
		"* BAD\r\n", "a\r\n", "a LOGIN ((\r\n", "a X ~{3}\r\nabc\r\n", "a LOGIN {99999999999999999999}\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &commandReader{
			r:           bufio.NewReaderSize(bytes.NewReader(data), 64),
			maxLine:     256,
			maxLiteral:  128,
			literalPlus: true,
			cont:        func() error { return nil },
		}
		for i := 0; i < 100; i++ {
			cmd, err := cr.readCommand()
			if err != nil {
				if pe, ok := err.(*protocolError); ok && !pe.fatal {
					continue
				}
				return
			}
			if cmd.tag == "" || cmd.name == "" {
				t.Fatalf("accepted a command without tag or name: %+v", cmd)
			}
			for _, a := range cmd.args {
				if a.kind == tokLiteral && len(a.value) > 128 {
					t.Fatalf("literal of %d bytes accepted", len(a.value))
				}
			}
		}
	})
}

// forbiddenCommands are what the guard must never let reach the upstream
// at the start of a command.
var forbiddenCommands = map[string]bool{"LOGIN": true, "AUTHENTICATE": true, "UNAUTHENTICATE": true, "STARTTLS": true, "COMPRESS": true}

// referenceCommands splits what reached the upstream into command first
// lines, independently of the guard, the way a LITERAL+ server reads it:
// "{n+}" literals are read without asking, and a "{n}" literal means the
// server asked for it (the guard only sends such payload after that).
func referenceCommands(stream []byte) []string {
	var firsts []string
	start := true
	for len(stream) > 0 {
		i := bytes.IndexByte(stream, '\n')
		if i < 0 {
			if start {
				firsts = append(firsts, string(stream))
			}
			return firsts
		}
		line := stream[:i+1]
		stream = stream[i+1:]
		if start {
			firsts = append(firsts, string(line))
		}
		n, _, _, ok := parseLiteralMarker(trimEOL(line))
		if !ok {
			start = true
			continue
		}
		start = false
		if int64(len(stream)) < n {
			return firsts
		}
		stream = stream[n:]
	}
	return firsts
}

// FuzzGuard sends arbitrary client bytes through the guard to an upstream
// with LITERAL+, and checks with an independent reading of what the
// upstream received that no forbidden command got through.
func FuzzGuard(f *testing.F) {
	for _, s := range []string{
		"a NOOP\r\nb LOGIN x y\r\n",
		"a APPEND INBOX {12}\r\nb LOGIN x y\r\n\r\n",
		"a APPEND INBOX {12+}\r\nb LOGIN x y\r\nc UNAUTHENTICATE\r\n",
		"a IDLE\r\nDONE\r\nb uid login\r\n",
		"a X {0}\r\n\r\nb LOGIN\r\n",
		"a LOGIN {3+}\r\nabc\r\nb NOOP {4}\r\nc LOGIN x\r\n",
		"a COMPRESS DEFLATE\r\nb LOGIN\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		up, _ := runGuard(t, guardPolicy{literalPlus: true}, data)
		for _, first := range referenceCommands(up) {
			// A lenient server: any ASCII space or control character
			// separates words.
			words := strings.FieldsFunc(first, func(r rune) bool { return r < 0x80 && r <= ' ' })
			if len(words) < 2 {
				continue
			}
			name := words[1]
			if strings.EqualFold(name, "UID") && len(words) > 2 {
				name = words[2]
			}
			if forbiddenCommands[strings.ToUpper(name)] {
				t.Fatalf("%q reached the upstream; input %q", first, data)
			}
		}
	})
}
