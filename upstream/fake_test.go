package upstream

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// step is one step of a fake upstream's script.
type step struct {
	kind byte // 'S' send a line, 'R' send raw bytes, 'C' expect a line, 'X' stall, 'Q' hang up
	text string
}

// send sends a line; "$T" stands for the tag of the last expected command.
func send(line string) step { return step{'S', line} }

// sendRaw sends bytes as they are (with "$T" replaced), in one write.
func sendRaw(b string) step { return step{'R', b} }

// expect reads one line from the client and compares it with line. A
// leading "$T " matches any tag, which later sends can use.
func expect(line string) step { return step{'C', line} }

// stall reads and ignores everything until the client hangs up.
func stall() step { return step{'X', ""} }

// hangup closes the connection.
func hangup() step { return step{'Q', ""} }

// startFake starts a scripted upstream that serves one connection and
// returns its address. Mismatches fail the test; the server is stopped
// when the test ends.
func startFake(t *testing.T, script ...step) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		runScript(t, conn, script)
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

func runScript(t *testing.T, conn net.Conn, script []step) {
	// Nothing in a test should take this long; it keeps a broken test
	// from hanging.
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	tag := ""
	for i, st := range script {
		switch st.kind {
		case 'S', 'R':
			b := strings.ReplaceAll(st.text, "$T", tag)
			if st.kind == 'S' {
				b += "\r\n"
			}
			if _, err := conn.Write([]byte(b)); err != nil {
				t.Errorf("fake: step %d: write: %v", i, err)
				return
			}
		case 'C':
			line, err := br.ReadString('\n')
			if err != nil {
				t.Errorf("fake: step %d: want %q, read error: %v", i, st.text, err)
				return
			}
			line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			want := st.text
			if rest, ok := strings.CutPrefix(want, "$T "); ok {
				want = rest
				tag, line, _ = strings.Cut(line, " ")
			}
			if line != want {
				t.Errorf("fake: step %d: got %q, want %q", i, line, want)
				return
			}
		case 'X':
			io.Copy(io.Discard, br)
			return
		case 'Q':
			return
		}
	}
	// Wait for the client to hang up, so that it can still read.
	io.Copy(io.Discard, br)
}
