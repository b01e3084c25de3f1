package upstream

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Pool keeps a few connections to one upstream prepared (dialed, secured,
// greeted, capabilities known, not logged in), so that a client's login
// waits only for the upstream's answer to LOGIN. Upstreams drop
// connections that stay unauthenticated too long, so prepared ones are
// replaced after MaxIdle. A Pool with Size 0 just dials.
//
// Its filler goroutine runs from Start until Close.
type Pool struct {
	opts      Options
	size      int
	maxIdle   time.Duration
	startOnce sync.Once

	mu   sync.Mutex
	idle []prepared // oldest first

	wake   chan struct{}
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	done   chan struct{}
}

type prepared struct {
	c     *Conn
	since time.Time
}

// PoolOptions configure a Pool.
type PoolOptions struct {
	Size    int           // prepared connections to keep; 0: none
	MaxIdle time.Duration // replace a prepared connection after this long (default 30s)
}

// NewPool returns a Pool for the upstream of opts.
func NewPool(opts Options, po PoolOptions) *Pool {
	p := &Pool{
		opts:    opts.withDefaults(),
		size:    po.Size,
		maxIdle: po.MaxIdle,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if p.maxIdle <= 0 {
		p.maxIdle = 30 * time.Second
	}
	return p
}

// Start starts preparing connections; a Pool that is never started, or
// has Size 0, dials at every login.
func (p *Pool) Start() {
	p.startOnce.Do(func() {
		if p.size <= 0 || p.ctx.Err() != nil {
			close(p.done)
			return
		}
		go p.fill()
	})
}

// Login returns a connection logged in with cr, identified with the
// client's addresses as Dial does. It uses a prepared connection when
// there is one; if the upstream dropped that connection meanwhile (the
// login fails with ErrUnavailable before any answer), it tries once more
// on a new connection.
func (p *Pool) Login(ctx context.Context, client ClientInfo, cr Credentials) (*Conn, error) {
	if c := p.take(); c != nil {
		err := c.identify(ctx, client)
		if err == nil {
			err = c.Login(ctx, cr)
		}
		if err == nil {
			return c, nil
		}
		c.Close()
		var e *Error
		if !errors.Is(err, ErrUnavailable) || errors.As(err, &e) && e.Code != "" || ctx.Err() != nil {
			return nil, err
		}
	}
	c, err := Dial(ctx, p.opts, client)
	if err != nil {
		return nil, err
	}
	if err := c.Login(ctx, cr); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// take removes the newest prepared connection that is still alive.
func (p *Pool) take() *Conn {
	for {
		p.mu.Lock()
		if len(p.idle) == 0 {
			p.mu.Unlock()
			return nil
		}
		pc := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		p.mu.Unlock()
		select {
		case p.wake <- struct{}{}:
		default:
		}
		if time.Since(pc.since) < p.maxIdle && pc.c.br.Buffered() == 0 {
			return pc.c
		}
		pc.c.Close()
	}
}

// Close stops preparing connections and closes the prepared ones.
func (p *Pool) Close() {
	p.cancel()
	p.Start() // a pool never started has nothing to wait for
	<-p.done
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, pc := range idle {
		pc.c.Close()
	}
}

// fill keeps the pool at its size, replacing expired connections, with a
// growing pause while the upstream cannot be reached.
func (p *Pool) fill() {
	defer close(p.done)
	var backoff time.Duration
	for {
		p.expire()
		p.mu.Lock()
		missing := p.size - len(p.idle)
		p.mu.Unlock()
		wait := p.maxIdle / 3
		if missing > 0 {
			ctx, cancel := context.WithTimeout(p.ctx, p.opts.ConnectTimeout+p.opts.CommandTimeout)
			c, err := Dial(ctx, p.opts, ClientInfo{})
			cancel()
			if err == nil {
				backoff = 0
				p.mu.Lock()
				p.idle = append(p.idle, prepared{c: c, since: time.Now()})
				p.mu.Unlock()
				continue
			}
			if p.ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, time.Second), 30*time.Second)
			wait = backoff
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

// expire closes prepared connections older than MaxIdle.
func (p *Pool) expire() {
	p.mu.Lock()
	var old []prepared
	for len(p.idle) > 0 && time.Since(p.idle[0].since) >= p.maxIdle {
		old = append(old, p.idle[0])
		p.idle = p.idle[1:]
	}
	p.mu.Unlock()
	for _, pc := range old {
		pc.c.Close()
	}
}
