package readahead

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	t.Cleanup(func() { c.Close(); peer.Close() })
	rc, ok := Wrap(c).(*Conn)
	if !ok {
		t.Fatal("Wrap did not wrap a TCP connection")
	}
	return rc, peer
}

func TestSmallReadsFromOneLargeRead(t *testing.T) {
	c, peer := pair(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1024) // 16 KiB
	peer.Write(data)
	time.Sleep(50 * time.Millisecond) // all of it in the socket
	var got []byte
	small := make([]byte, 100)
	n, err := c.Read(small)
	if err != nil || n != 100 {
		t.Fatalf("first read: %d, %v", n, err)
	}
	got = append(got, small[:n]...)
	if c.Buffered() != len(data)-100 {
		t.Fatalf("Buffered = %d after one read: no read-ahead", c.Buffered())
	}
	for len(got) < len(data) {
		n, err := c.Read(small)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, small[:n]...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("data differs")
	}
	if c.buf != nil {
		t.Fatal("buffer held after it was drained")
	}
}

func TestDeadlineCloseAndEOF(t *testing.T) {
	c, peer := pair(t)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := c.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})
	peer.Write([]byte("last"))
	peer.Close()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "last" {
		t.Fatalf("ReadAll = %q, %v", b, err)
	}
	done := make(chan error, 1)
	c2, _ := pair(t)
	go func() {
		_, err := c2.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c2.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed conn: %v", err)
	}
}

func TestWrapOther(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("a non-TCP conn was wrapped")
	}
}
