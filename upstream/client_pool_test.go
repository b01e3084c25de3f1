package upstream

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

func TestAccountPoolBound(t *testing.T) {
	p := NewAccountPool(memAccount(t, TLSNone), 2)
	defer p.Close()
	ctx := context.Background()
	a, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("the same client twice")
	}

	// A third Get waits, and gives up with its context.
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if c, err := p.Get(short); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get with all busy = %v, %v", c, err)
	}

	// A waiting Get takes the client that is put back.
	got := make(chan *Client, 1)
	go func() {
		c, err := p.Get(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case c := <-got:
		t.Fatalf("Get returned %p while all were busy", c)
	default:
	}
	p.Put(a)
	select {
	case c := <-got:
		if c != a {
			t.Errorf("waiting Get got %p, want the returned %p", c, a)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiting Get not woken by Put")
	}
	if err := a.Noop(ctx); err != nil {
		t.Error(err)
	}
	p.Put(a)
	p.Put(b)
	p.mu.Lock()
	idle, live := len(p.idle), p.live
	p.mu.Unlock()
	if idle != 2 || live != 2 {
		t.Errorf("idle %d live %d, want 2 and 2", idle, live)
	}
}

func TestAccountPoolReplacesBroken(t *testing.T) {
	p := NewAccountPool(memAccount(t, TLSNone), 1)
	defer p.Close()
	ctx := context.Background()
	c, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.raw.Close() // the upstream went away
	if err := c.Noop(ctx); !errors.Is(err, ErrUnavailable) || !c.Broken() {
		t.Fatalf("NOOP on a closed connection: %v", err)
	}
	p.Put(c)
	// The owner goroutine dials a replacement.
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.idle) == 1 })
	c2, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c2 == c || c2.Broken() {
		t.Fatalf("Get after a break returned %p (old %p), broken %v", c2, c, c2.Broken())
	}
	if err := c2.Noop(ctx); err != nil {
		t.Fatal(err)
	}

	// A client that breaks while idle is skipped by Get.
	p.Put(c2)
	c2.raw.Close()
	waitFor(t, c2.Broken)
	c3, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c3 == c2 {
		t.Fatal("Get returned a broken idle client")
	}
	if err := c3.Noop(ctx); err != nil {
		t.Fatal(err)
	}
	p.Put(c3)
}

func TestAccountPoolKeepAlive(t *testing.T) {
	o := memAccount(t, TLSNone)
	o.KeepAlive = 100 * time.Millisecond
	p := NewAccountPool(o, 1)
	defer p.Close()
	c, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p.Put(c)
	p.mu.Lock()
	first := p.idle[0].since
	p.mu.Unlock()
	// The owner NOOPs it and puts it back, refreshed.
	waitFor(t, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.idle) == 1 && p.idle[0].since.After(first)
	})
	if c.Broken() {
		t.Error("broken after keepalive")
	}
}

func TestAccountPoolBackoff(t *testing.T) {
	// The upstream hangs up at once: every dial fails.
	addr, accepted := countAccepts(t, func(c net.Conn, _ int64) { c.Close() })
	p := NewAccountPool(AccountOptions{
		Options:     Options{Name: "down", Address: addr, TLS: TLSNone, CommandTimeout: 2 * time.Second},
		Credentials: Credentials{Username: "u", Password: "p"},
	}, 3)
	defer p.Close()
	ctx := context.Background()
	if _, err := p.Get(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("first Get: %v", err)
	}
	start := time.Now()
	_, err := p.Get(ctx)
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("Get while backing off: %v after %v", err, time.Since(start))
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("%d connections, want 1 (no dial while backing off)", n)
	}
	p.mu.Lock()
	backoff := p.backoff
	p.mu.Unlock()
	if backoff != minBackoff {
		t.Errorf("backoff %v, want %v", backoff, minBackoff)
	}
}

func TestAccountPoolClose(t *testing.T) {
	p := NewAccountPool(memAccount(t, TLSNone), 2)
	ctx := context.Background()
	inUse, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	idle, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.Put(idle)
	p.Close()
	if !inUse.Broken() || !idle.Broken() {
		t.Errorf("after Close: in use broken %v, idle broken %v", inUse.Broken(), idle.Broken())
	}
	if err := inUse.Noop(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("NOOP on a client of a closed pool: %v", err)
	}
	p.Put(inUse) // no effect
	if _, err := p.Get(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Get after Close: %v", err)
	}
	p.Close() // idempotent
}

func TestAccountPoolCloseWakesGet(t *testing.T) {
	p := NewAccountPool(memAccount(t, TLSNone), 1)
	ctx := context.Background()
	c, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := p.Get(ctx)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	p.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("waiting Get after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake a waiting Get")
	}
	p.Put(c)
}
