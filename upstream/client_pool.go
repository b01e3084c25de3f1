package upstream

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Backoff bounds between failed dials of an AccountPool.
const (
	minBackoff = time.Second
	maxBackoff = 60 * time.Second
)

// AccountPool keeps up to max logged-in Clients for one upstream account.
//
// Get hands out an idle Client, or dials one while fewer than max exist,
// or waits for a Put. A Client that breaks while out is replaced in the
// background once it is Put back; an idle one is NOOPed after KeepAlive,
// which finds broken connections and keeps upstreams from logging it
// out. After a failed dial the pool waits 1s, doubling to 60s, before
// dialling again, and Get fails at once meanwhile rather than hammer a
// dead upstream or a refused login.
//
// Its owner goroutine runs from NewAccountPool until Close.
type AccountPool struct {
	opts AccountOptions
	max  int

	mu      sync.Mutex
	idle    []pooledClient // most recently used last
	all     map[*Client]struct{}
	live    int // len(all) plus dials in progress
	deficit int // broken Clients the owner should replace
	backoff time.Duration
	retryAt time.Time
	lastErr error
	closed  bool
	changed chan struct{} // closed and replaced when a Client or a slot frees

	wake   chan struct{}
	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	done   chan struct{}
}

type pooledClient struct {
	c     *Client
	since time.Time
}

// NewAccountPool returns a pool of at most n (at least 1) Clients for
// the account of o. It dials nothing until the first Get.
func NewAccountPool(o AccountOptions, n int) *AccountPool {
	o.Options = o.Options.withDefaults()
	if o.KeepAlive <= 0 {
		o.KeepAlive = 5 * time.Minute
	}
	p := &AccountPool{
		opts:    o,
		max:     max(n, 1),
		all:     make(map[*Client]struct{}),
		changed: make(chan struct{}),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	go p.run()
	return p
}

// Get returns a healthy Client for the caller's exclusive use until Put.
// It may have a mailbox selected. Errors are *Error wrapping
// ErrUnavailable or ErrAuthFailed, as DialClient's; when all max Clients
// are in use and ctx ends first, the error wraps ctx's error too.
func (p *AccountPool) Get(ctx context.Context) (*Client, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, p.closedError()
		}
		if n := len(p.idle); n > 0 {
			c := p.idle[n-1].c
			p.idle = p.idle[:n-1]
			if c.Broken() {
				delete(p.all, c)
				p.live--
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.mu.Unlock()
			return c, nil
		}
		if p.live < p.max {
			if wait := time.Until(p.retryAt); wait > 0 {
				err := &Error{Upstream: p.opts.Name, Op: "dial",
					Err: fmt.Errorf("%w: retrying in %v after: %v", ErrUnavailable, wait.Round(time.Millisecond), p.lastErr)}
				p.mu.Unlock()
				return nil, err
			}
			p.live++
			p.mu.Unlock()
			return p.dial(ctx)
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, &Error{Upstream: p.opts.Name, Op: "get",
				Err: fmt.Errorf("%w: all %d connections busy: %w", ErrUnavailable, p.max, ctx.Err())}
		}
	}
}

// Put gives back a Client from Get. A broken one is closed and replaced
// in the background; a healthy one gets AccountOptions.Unilateral back as
// its handler. Put after Close, or of a Client the pool does not know,
// does nothing (Close has closed the pool's Clients).
func (p *AccountPool) Put(c *Client) {
	if c == nil {
		return
	}
	c.SetUnilateral(p.opts.Unilateral)
	p.mu.Lock()
	if _, ok := p.all[c]; !ok {
		p.mu.Unlock()
		return
	}
	if c.Broken() {
		delete(p.all, c)
		p.live--
		p.deficit = min(p.deficit+1, p.max)
		p.notifyLocked()
		p.mu.Unlock()
		p.poke()
		c.Close()
		return
	}
	p.idle = append(p.idle, pooledClient{c: c, since: time.Now()})
	p.notifyLocked()
	p.mu.Unlock()
}

// Close closes every Client of the pool, idle or in use (a Do in
// progress then fails with ErrUnavailable), stops the owner goroutine and
// makes later Gets fail.
func (p *AccountPool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done
		return
	}
	p.closed = true
	all := p.all
	p.all = make(map[*Client]struct{})
	p.idle = nil
	p.live -= len(all)
	p.notifyLocked()
	p.mu.Unlock()
	p.cancel()
	<-p.done
	var wg sync.WaitGroup
	for c := range all {
		wg.Go(func() { c.Close() })
	}
	wg.Wait()
}

func (p *AccountPool) closedError() error {
	return &Error{Upstream: p.opts.Name, Op: "get", Err: fmt.Errorf("%w: pool closed", ErrUnavailable)}
}

// dial dials a Client for a slot already counted in live. Close cancels
// it.
func (p *AccountPool) dial(ctx context.Context) (*Client, error) {
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()
	c, err := DialClient(dctx, p.opts)
	p.mu.Lock()
	if err != nil {
		p.live--
		if ctx.Err() == nil && p.ctx.Err() == nil {
			p.backoff = min(max(2*p.backoff, minBackoff), maxBackoff)
			p.retryAt = time.Now().Add(p.backoff)
			p.lastErr = err
		}
		p.notifyLocked()
		p.mu.Unlock()
		p.poke()
		return nil, err
	}
	if p.closed {
		p.live--
		p.mu.Unlock()
		c.Close()
		return nil, p.closedError()
	}
	p.all[c] = struct{}{}
	p.backoff, p.retryAt, p.lastErr = 0, time.Time{}, nil
	p.mu.Unlock()
	return c, nil
}

// notifyLocked wakes the Gets waiting for a Client or a slot.
func (p *AccountPool) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// poke wakes the owner goroutine.
func (p *AccountPool) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run is the owner goroutine: it replaces broken Clients (after the
// backoff) and NOOPs idle ones, until Close.
func (p *AccountPool) run() {
	defer close(p.done)
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		now := time.Now()
		wait := p.opts.KeepAlive
		var stale []*Client
		keep := p.idle[:0]
		for _, pc := range p.idle {
			if age := now.Sub(pc.since); age >= p.opts.KeepAlive {
				stale = append(stale, pc.c)
			} else {
				keep = append(keep, pc)
				wait = min(wait, p.opts.KeepAlive-age)
			}
		}
		clear(p.idle[len(keep):])
		p.idle = keep
		replace := p.deficit > 0 && p.live < p.max && !now.Before(p.retryAt)
		if replace {
			p.deficit--
			p.live++
		} else if p.deficit > 0 && now.Before(p.retryAt) {
			wait = min(wait, p.retryAt.Sub(now))
		}
		p.mu.Unlock()

		for _, c := range stale {
			ctx, cancel := context.WithTimeout(p.ctx, p.opts.CommandTimeout)
			c.Noop(ctx)
			cancel()
			p.Put(c)
		}
		if replace {
			c, err := p.dial(p.ctx)
			if err != nil {
				if p.ctx.Err() != nil {
					return
				}
				p.mu.Lock()
				p.deficit = min(p.deficit+1, p.max)
				p.mu.Unlock()
			} else {
				p.Put(c)
			}
			continue
		}
		if len(stale) > 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-p.ctx.Done():
			t.Stop()
			return
		case <-p.wake:
		case <-t.C:
		}
		t.Stop()
	}
}
