package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingListener counts the connections a server accepts.
func countAccepts(t *testing.T, greet func(c net.Conn, n int64)) (addr string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int64)
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			greet(c, accepted.Add(1))
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), accepted
}

func TestPoolPreparesAndReplaces(t *testing.T) {
	addr, _ := startMem(t, TLSNone)
	opts := Options{Name: "mem", Address: addr, TLS: TLSNone}
	p := NewPool(opts, PoolOptions{Size: 2, MaxIdle: 300 * time.Millisecond})
	p.Start()
	defer p.Close()
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.idle) == 2 })
	start := time.Now()
	c, err := p.Login(context.Background(), ClientInfo{}, Credentials{Username: memUser, Password: memPassword})
	if err != nil {
		t.Fatalf("login on a prepared connection: %v", err)
	}
	defer c.Close()
	t.Logf("login on a prepared connection took %v", time.Since(start))
	if _, err := p.Login(context.Background(), ClientInfo{}, Credentials{Username: memUser, Password: "wrong"}); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("wrong password: %v", err)
	}
	// The pool fills up again, and replaces connections that aged.
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.idle) == 2 })
	p.mu.Lock()
	first := p.idle[0].c
	p.mu.Unlock()
	waitFor(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.idle) == 2 && p.idle[0].c != first && p.idle[1].c != first
	})
}

func TestPoolSkipsConnectionsTheUpstreamDropped(t *testing.T) {
	addr, accepted := countAccepts(t, func(c net.Conn, n int64) {
		fmt.Fprintf(c, "* OK [CAPABILITY IMAP4rev1] hi\r\n")
		if n > 1 {
			go func() {
				// Answers LOGIN.
				buf := make([]byte, 512)
				m, _ := c.Read(buf)
				tag, _, _ := strings.Cut(string(buf[:m]), " ")
				fmt.Fprintf(c, "%s OK [CAPABILITY IMAP4rev1] in\r\n", tag)
			}()
		}
		if n == 1 {
			// The first one is given up by the upstream while prepared.
			go func() {
				time.Sleep(100 * time.Millisecond)
				fmt.Fprintf(c, "* BYE idle too long\r\n")
				c.Close()
			}()
		}
	})
	p := NewPool(Options{Name: "fake", Address: addr, TLS: TLSNone, CommandTimeout: time.Second}, PoolOptions{Size: 1, MaxIdle: time.Minute})
	p.Start()
	defer p.Close()
	waitFor(t, func() bool { return accepted.Load() >= 1 })
	time.Sleep(300 * time.Millisecond)
	c, err := p.Login(context.Background(), ClientInfo{}, Credentials{Username: "u", Password: "p"})
	if err != nil {
		t.Fatalf("login after the upstream dropped the prepared connection: %v", err)
	}
	defer c.Close()
	if accepted.Load() < 2 {
		t.Fatalf("no new connection after the dropped one (accepted %d)", accepted.Load())
	}
}

func TestPoolUnreachableFallsBackToDial(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	p := NewPool(Options{Name: "down", Address: addr, TLS: TLSNone, ConnectTimeout: 200 * time.Millisecond}, PoolOptions{Size: 2})
	p.Start()
	defer p.Close()
	if _, err := p.Login(context.Background(), ClientInfo{}, Credentials{Username: "u", Password: "p"}); err == nil {
		t.Fatal("Get to a down upstream succeeded")
	}
	p0 := NewPool(Options{Name: "none", Address: addr, TLS: TLSNone}, PoolOptions{})
	p0.Close() // a pool of size 0 starts nothing and closes at once
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
