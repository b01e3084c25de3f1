package proxy

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingConn records the writes that reach the connection.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
	buf    bytes.Buffer
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	c.buf.Write(p)
	return len(p), nil
}

func (c *countingConn) stats() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes, c.buf.String()
}

// TestHandedConnCoalesces: many small response lines reach the client in
// few writes, all before the next command is read; a line written while a
// Read waits (IDLE) goes out after flushDelay; Close sends what is left.
func TestHandedConnCoalesces(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	cc := &countingConn{Conn: a}
	hc := &handedConn{Conn: cc, tag: "t1"}
	hc.Write([]byte("* PREAUTH [CAPABILITY IMAP4rev1] ready\r\n"))
	var want strings.Builder
	want.WriteString("t1 OK [CAPABILITY IMAP4rev1] Logged in\r\n")
	for i := range 1000 {
		line := "* " + strings.Repeat("x", i%50) + " FETCH (UID 1 FLAGS ())\r\n"
		want.WriteString(line)
		if _, err := hc.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	go b.Write([]byte("a NOOP\r\n"))
	p := make([]byte, 64)
	if _, err := hc.Read(p); err != nil {
		t.Fatal(err)
	}
	n, got := cc.stats()
	if got != want.String() {
		t.Fatalf("bytes differ: got %d, want %d", len(got), want.Len())
	}
	if max := want.Len()/flushSize + 2; n > max {
		t.Errorf("%d writes for %d bytes, want at most %d", n, want.Len(), max)
	}

	// An update written while nothing reads goes out by itself.
	hc.Write([]byte("* 3 EXISTS\r\n"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, got := cc.stats(); strings.HasSuffix(got, "* 3 EXISTS\r\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an update written during IDLE was never sent")
		}
		time.Sleep(time.Millisecond)
	}

	// A large literal passes as written, after what was pending.
	hc.Write([]byte("* 4 FETCH (BODY[] {70000}\r\n"))
	big := strings.Repeat("0123456789", 7000)
	if n, err := hc.Write([]byte(big)); n != len(big) || err != nil {
		t.Fatalf("large write: %d %v", n, err)
	}
	hc.Write([]byte(")\r\n"))
	go b.Write([]byte("a NOOP\r\n"))
	if _, err := hc.Read(p); err != nil {
		t.Fatal(err)
	}
	if _, got := cc.stats(); !strings.HasSuffix(got, "* 4 FETCH (BODY[] {70000}\r\n"+big+")\r\n") {
		t.Fatal("a large literal came out garbled")
	}

	hc.Write([]byte("* BYE bye\r\n"))
	hc.Close()
	if _, got := cc.stats(); !strings.HasSuffix(got, "* BYE bye\r\n") {
		t.Fatal("Close dropped the pending BYE")
	}
	if _, err := hc.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
}
