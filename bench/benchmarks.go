package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// side is one way of reaching Dovecot: directly or through the proxy.
type side struct {
	name string
	addr string
	tls  *tls.Config
	user string
	pass string
}

// tlsSides returns the direct and proxied sides with implicit TLS on every
// hop (alice is routed to Dovecot's TLS port).
func (e *env) tlsSides() (direct, proxy side) {
	return side{"direct", e.directTLS, e.clientTLS, userTLS, passTLS},
		side{"proxy", e.proxyTLS, e.clientTLS, userTLS, passTLS}
}

// interleave runs a and b, a first in even rounds and b first in odd ones,
// so that drifting machine load hits both sides alike.
func interleave(round int, a, b func() error) error {
	if round%2 == 1 {
		a, b = b, a
	}
	if err := a(); err != nil {
		return err
	}
	return b()
}

// cmdTimeout bounds every command of the session benchmarks.
const cmdTimeout = 30 * time.Second

// benchLogin measures connect + TLS handshake + greeting + LOGIN + LOGOUT,
// one session after another. The same is measured without TLS on any hop
// (bob, routed to Dovecot's plaintext port), for information: the
// difference shows what the TLS handshakes cost.
func benchLogin(ctx context.Context, e *env, o *options, rep *report) error {
	direct, proxy := e.tlsSides()
	plainDirect := side{"direct", e.directPlain, nil, userPlain, passPlain}
	plainProxy := side{"proxy", e.proxyPlain, nil, userPlain, passPlain}
	once := func(s side) (time.Duration, error) {
		t0 := time.Now()
		c, err := login(ctx, s.addr, s.tls, s.user, s.pass, cmdTimeout)
		if err != nil {
			return 0, err
		}
		defer c.close()
		if err := c.ok("LOGOUT"); err != nil {
			return 0, fmt.Errorf("%s: %w", s.name, err)
		}
		return time.Since(t0), nil
	}
	var dd, pd, dpl, ppl []time.Duration
	var cpuTLS, cpuPlain time.Duration // proxy CPU time during proxied logins
	measure := func(s side, into *[]time.Duration) func() error {
		return func() error {
			var cpu0 time.Duration
			if s.name == "proxy" {
				cpu0 = e.proxy.cpuTime()
			}
			d, err := once(s)
			*into = append(*into, d)
			if s.name == "proxy" && into == &pd {
				cpuTLS += e.proxy.cpuTime() - cpu0
			} else if s.name == "proxy" && into == &ppl {
				cpuPlain += e.proxy.cpuTime() - cpu0
			}
			return err
		}
	}
	// Warm-up: Dovecot's auth cache, the proxy's first TLS handshakes.
	var scratch []time.Duration
	for i := 0; i < 5; i++ {
		if err := interleave(i, measure(direct, &scratch), measure(proxy, &scratch)); err != nil {
			return err
		}
		if err := interleave(i, measure(plainDirect, &scratch), measure(plainProxy, &scratch)); err != nil {
			return err
		}
	}
	for i := 0; i < o.loginN && ctx.Err() == nil; i++ {
		if err := interleave(i, measure(direct, &dd), measure(proxy, &pd)); err != nil {
			return err
		}
		if err := interleave(i, measure(plainDirect, &dpl), measure(plainProxy, &ppl)); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	dMed, pMed := percentile(dd, 50), percentile(pd, 50)
	dP99, pP99 := percentile(dd, 99), percentile(pd, 99)
	added := pMed - dMed
	rep.add(row{"login (TLS)", fmt.Sprintf("median, n=%d", len(dd)), ms(dMed), ms(pMed),
		ratio(float64(pMed), float64(dMed)) + fmt.Sprintf(" (%+.2f ms)", float64(added)/1e6),
		"≤ +1 ms", verdict(added <= time.Millisecond)})
	rep.add(row{"login (TLS)", "p99", ms(dP99), ms(pP99),
		ratio(float64(pP99), float64(dP99)) + fmt.Sprintf(" (%+.2f ms)", float64(pP99-dP99)/1e6), "-", info})
	dMed, pMed = percentile(dpl, 50), percentile(ppl, 50)
	rep.add(row{"login (plain)", fmt.Sprintf("median, n=%d", len(dpl)), ms(dMed), ms(pMed),
		ratio(float64(pMed), float64(dMed)) + fmt.Sprintf(" (%+.2f ms)", float64(pMed-dMed)/1e6), "-", info})
	rep.note("login: proxy CPU time per proxied login: %.2f ms with TLS on both hops, %.2f ms in plaintext (10 ms clock ticks, averaged)",
		float64(cpuTLS)/1e6/float64(len(pd)), float64(cpuPlain)/1e6/float64(len(ppl)))
	return nil
}

// benchSelect measures SELECT INBOX followed by UID FETCH 1:* (FLAGS) on
// one logged-in connection per side, round after round.
func benchSelect(ctx context.Context, e *env, o *options, rep *report) error {
	direct, proxy := e.tlsSides()
	dc, err := login(ctx, direct.addr, direct.tls, direct.user, direct.pass, cmdTimeout)
	if err != nil {
		return err
	}
	defer dc.close()
	pc, err := login(ctx, proxy.addr, proxy.tls, proxy.user, proxy.pass, cmdTimeout)
	if err != nil {
		return err
	}
	defer pc.close()
	var dd, pd []time.Duration
	measure := func(c *client, into *[]time.Duration) func() error {
		return func() error {
			t0 := time.Now()
			if err := c.ok("SELECT INBOX"); err != nil {
				return err
			}
			if err := c.ok("UID FETCH 1:* (FLAGS)"); err != nil {
				return err
			}
			*into = append(*into, time.Since(t0))
			return nil
		}
	}
	var scratch []time.Duration
	for i := 0; i < 20; i++ {
		if err := interleave(i, measure(dc, &scratch), measure(pc, &scratch)); err != nil {
			return err
		}
	}
	for i := 0; i < o.selectN && ctx.Err() == nil; i++ {
		if err := interleave(i, measure(dc, &dd), measure(pc, &pd)); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	dMed, pMed := percentile(dd, 50), percentile(pd, 50)
	dP99, pP99 := percentile(dd, 99), percentile(pd, 99)
	r := float64(pMed) / float64(dMed)
	rep.add(row{"select+fetch", fmt.Sprintf("median, %d msgs, n=%d", smallMessages, len(dd)), ms(dMed), ms(pMed),
		ratio(float64(pMed), float64(dMed)) + fmt.Sprintf(" (%+.2f ms)", float64(pMed-dMed)/1e6),
		"≤ 1.2×", verdict(r <= 1.2)})
	rep.add(row{"select+fetch", "p99", ms(dP99), ms(pP99),
		ratio(float64(pP99), float64(dP99)) + fmt.Sprintf(" (%+.2f ms)", float64(pP99-dP99)/1e6), "-", info})
	return nil
}

// openSessions logs n clients in at s, par at a time, and runs setup on
// each.
func openSessions(ctx context.Context, s side, n, par int, setup string) ([]*client, error) {
	clients := make([]*client, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := login(ctx, s.addr, s.tls, s.user, s.pass, cmdTimeout)
				if err == nil && setup != "" {
					if err = c.ok(setup); err != nil {
						c.close()
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("%s session %d: %w", s.name, i, err)
					}
					mu.Unlock()
					next.Store(int64(n)) // stop the others
					return
				}
				clients[i] = c
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		closeAll(clients)
		return nil, firstErr
	}
	return clients, nil
}

// closeAll closes every non-nil client.
func closeAll(cs []*client) {
	for _, c := range cs {
		if c != nil {
			c.close()
		}
	}
}

// concurrentOps is what each concurrent client cycles through.
var concurrentOps = []string{
	"NOOP",
	"SELECT INBOX",
	"UID FETCH 1:10 (FLAGS)",
	"STATUS INBOX (MESSAGES UIDNEXT UNSEEN)",
}

// benchConcurrent measures the throughput of many clients sending small
// commands at once.
func benchConcurrent(ctx context.Context, e *env, o *options, rep *report) error {
	direct, proxy := e.tlsSides()
	dcs, err := openSessions(ctx, direct, o.concClients, 10, "SELECT INBOX")
	if err != nil {
		return err
	}
	defer closeAll(dcs)
	pcs, err := openSessions(ctx, proxy, o.concClients, 10, "SELECT INBOX")
	if err != nil {
		return err
	}
	defer closeAll(pcs)

	type total struct {
		ops     int64
		elapsed time.Duration
		cpu     time.Duration // proxy CPU time during the rounds
		io      ioStats       // proxy I/O during the rounds
	}
	var dt, pt total
	round := func(cs []*client, d time.Duration, into *total) func() error {
		return func() error {
			cpu0, io0 := e.proxy.cpuTime(), e.proxy.io()
			var ops atomic.Int64
			var firstErr atomic.Pointer[error]
			var wg sync.WaitGroup
			start := time.Now()
			end := start.Add(d)
			for i, c := range cs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var n int64
					for k := i; time.Now().Before(end) && ctx.Err() == nil; k++ {
						if err := c.ok(concurrentOps[k%len(concurrentOps)]); err != nil {
							firstErr.CompareAndSwap(nil, &err)
							break
						}
						n++
					}
					ops.Add(n)
				}()
			}
			wg.Wait()
			into.elapsed += time.Since(start)
			into.ops += ops.Load()
			into.cpu += e.proxy.cpuTime() - cpu0
			into.io = into.io.add(e.proxy.io().sub(io0))
			if p := firstErr.Load(); p != nil {
				return *p
			}
			return ctx.Err()
		}
	}
	// A short unmeasured round warms both sides up.
	var scratch total
	if err := interleave(0, round(dcs, 300*time.Millisecond, &scratch), round(pcs, 300*time.Millisecond, &scratch)); err != nil {
		return err
	}
	per := o.concDur / time.Duration(o.concRounds)
	for r := 0; r < o.concRounds; r++ {
		if err := interleave(r, round(dcs, per, &dt), round(pcs, per, &pt)); err != nil {
			return err
		}
	}
	dRate := float64(dt.ops) / dt.elapsed.Seconds()
	pRate := float64(pt.ops) / pt.elapsed.Seconds()
	rep.add(row{"concurrent", fmt.Sprintf("ops/s, %d clients, %v", o.concClients, o.concDur),
		fmt.Sprintf("%.0f", dRate), fmt.Sprintf("%.0f", pRate), ratio(pRate, dRate),
		"≥ 0.95×", verdict(pRate/dRate >= 0.95)})
	rep.note("concurrent: the proxy used %.0f%% of a core during the proxied rounds and %.0f%% during the direct ones (%.1f µs of proxy CPU per proxied command)",
		100*pt.cpu.Seconds()/pt.elapsed.Seconds(), 100*dt.cpu.Seconds()/dt.elapsed.Seconds(),
		float64(pt.cpu.Microseconds())/float64(max(pt.ops, 1)))
	if pt.ops > 0 {
		rep.note("concurrent: per proxied command the proxy made %.1f read and %.1f write system calls",
			float64(pt.io.readCalls)/float64(pt.ops), float64(pt.io.writeCalls)/float64(pt.ops))
	}
	return nil
}

// benchBulk measures UID FETCH 1:* BODY.PEEK[] over the Bulk mailbox.
func benchBulk(ctx context.Context, e *env, o *options, rep *report) error {
	if e.bulkMessages == 0 {
		return errors.New("no bulk mailbox (it is filled only when bulk is selected)")
	}
	direct, proxy := e.tlsSides()
	open := func(s side) (*client, error) {
		c, err := login(ctx, s.addr, s.tls, s.user, s.pass, 5*time.Minute)
		if err != nil {
			return nil, err
		}
		c.growBuffer()
		if err := c.ok("EXAMINE " + bulkMailbox); err != nil {
			c.close()
			return nil, err
		}
		return c, nil
	}
	dc, err := open(direct)
	if err != nil {
		return err
	}
	defer dc.close()
	pc, err := open(proxy)
	if err != nil {
		return err
	}
	defer pc.close()

	res, err := e.measureBulk(ctx, dc, pc, o.bulkRounds, e.bulkBytes)
	if err != nil {
		return err
	}
	dRates, pRates, proxyCPU, proxyBytes, proxyIO := res.dRates, res.pRates, res.proxyCPU, res.proxyBytes, res.proxyIO
	dAll := fmt.Sprint(roundAll(dRates))
	pAll := fmt.Sprint(roundAll(pRates))
	dMed, pMed := medianFloat(dRates), medianFloat(pRates)
	rep.add(row{"bulk", fmt.Sprintf("MB/s, %.0f MB, median of %d", float64(e.bulkBytes)/1e6, o.bulkRounds),
		fmt.Sprintf("%.0f", dMed), fmt.Sprintf("%.0f", pMed), ratio(pMed, dMed),
		"≥ 0.97×", verdict(pMed/dMed >= 0.97)})
	rep.note("bulk: rounds direct %s MB/s, proxy %s MB/s; the proxy spent %.2f CPU-seconds per GB relayed (TLS decrypt + encrypt)",
		dAll, pAll, proxyCPU.Seconds()/(float64(proxyBytes)/1e9))
	if proxyIO.readCalls > 0 {
		rep.note("bulk: the proxy made %.0f read and %.0f write system calls per MB relayed; average %.0f bytes per read, %.0f per write (TLS ciphertext)",
			float64(proxyIO.readCalls)/(float64(proxyBytes)/1e6), float64(proxyIO.writeCalls)/(float64(proxyBytes)/1e6),
			float64(proxyIO.readBytes)/float64(proxyIO.readCalls), float64(proxyIO.writeBytes)/float64(max(proxyIO.writeCalls, 1)))
	}
	return nil
}

func roundAll(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(int(x + 0.5))
	}
	return out
}

// benchRSS measures the proxy's resident memory per idle logged-in session,
// with TLS on both hops and in plaintext on both hops. Each variant runs in
// a freshly started proxy process.
func benchRSS(ctx context.Context, e *env, o *options, rep *report) error {
	variants := []struct {
		name   string
		s      side
		target string
		limit  float64 // KiB
		strict bool    // a target, not an aim
	}{
		{"TLS both hops", side{"proxy", e.proxyTLS, e.clientTLS, userTLS, passTLS}, "≤ 40 KiB", 40, true},
		{"plain both hops", side{"proxy", e.proxyPlain, nil, userPlain, passPlain}, "< 10 KiB (aim)", 10, false},
	}
	for _, v := range variants {
		if err := e.restartProxy(); err != nil {
			return err
		}
		// Warm-up: a few sessions make the one-time allocations (TLS
		// tables, first goroutines, metric labels) before the baseline.
		warm, err := openSessions(ctx, v.s, 10, 5, "")
		if err != nil {
			return err
		}
		closeAll(warm)
		time.Sleep(o.settle)
		before, err := e.proxy.rssKiB()
		if err != nil {
			return err
		}
		m0, err0 := scrapeMetrics(e.adminAddr, goMetrics...)
		cs, err := openSessions(ctx, v.s, o.sessions, 16, "")
		if err != nil {
			return err
		}
		time.Sleep(o.settle)
		after, err := e.proxy.rssKiB()
		m1, err1 := scrapeMetrics(e.adminAddr, goMetrics...)
		closeAll(cs)
		if err != nil {
			return err
		}
		if err0 == nil && err1 == nil {
			n := float64(o.sessions)
			rep.note("rss %s, per session from the Go runtime: %.1f goroutines, stacks %.1f KiB, heap in use %.1f KiB (live objects %.1f KiB)",
				v.name, (m1["go_goroutines"]-m0["go_goroutines"])/n,
				(m1["go_memstats_stack_inuse_bytes"]-m0["go_memstats_stack_inuse_bytes"])/1024/n,
				(m1["go_memstats_heap_inuse_bytes"]-m0["go_memstats_heap_inuse_bytes"])/1024/n,
				(m1["go_memstats_heap_alloc_bytes"]-m0["go_memstats_heap_alloc_bytes"])/1024/n)
		}
		per := float64(after-before) / float64(o.sessions)
		ok := per <= v.limit
		if !v.strict {
			ok = per < v.limit
		}
		rep.add(row{"rss/session", fmt.Sprintf("%s, %d idle", v.name, o.sessions), "-",
			fmt.Sprintf("%.1f KiB", per), "-", v.target, verdict(ok)})
		rep.note("rss %s: VmRSS %d KiB before, %d KiB with %d sessions", v.name, before, after, o.sessions)
		time.Sleep(o.settle) // let Dovecot end the closed sessions
	}
	return nil
}

// goMetrics are the proxy's Go runtime metrics read around the RSS
// measurement.
var goMetrics = []string{"go_goroutines", "go_memstats_stack_inuse_bytes",
	"go_memstats_heap_inuse_bytes", "go_memstats_heap_alloc_bytes"}

// benchBurst opens many connections at once (released together by a
// barrier) and counts those greeted within the timeout.
func benchBurst(ctx context.Context, e *env, o *options, rep *report) error {
	direct, proxy := e.tlsSides()
	type result struct {
		greeted int
		last    time.Duration // time to the last greeting
		p50     time.Duration
		err     error // one of the failures
	}
	var dr, pr []result
	round := func(s side, into *[]result) func() error {
		return func() error {
			release := make(chan struct{})
			var releasedAt time.Time
			conns := make([]*client, o.burst)
			times := make([]time.Duration, o.burst)
			errs := make([]error, o.burst)
			var ready, wg sync.WaitGroup
			for i := 0; i < o.burst; i++ {
				ready.Add(1)
				wg.Add(1)
				go func() {
					defer wg.Done()
					ready.Done()
					<-release
					cctx, cancel := context.WithDeadline(ctx, releasedAt.Add(o.burstTimeout))
					defer cancel()
					c, err := dialIMAP(cctx, s.addr, s.tls, time.Until(releasedAt.Add(o.burstTimeout)))
					if err != nil {
						errs[i] = err
						return
					}
					times[i] = time.Since(releasedAt)
					conns[i] = c
				}()
			}
			ready.Wait()
			time.Sleep(100 * time.Millisecond) // every goroutine parked on the barrier
			releasedAt = time.Now()
			close(release)
			wg.Wait()
			closeAll(conns)
			var r result
			var ok []time.Duration
			for i := range conns {
				if conns[i] != nil && times[i] <= o.burstTimeout {
					r.greeted++
					ok = append(ok, times[i])
				} else if r.err == nil && errs[i] != nil {
					r.err = errs[i]
				}
			}
			r.p50 = percentile(ok, 50)
			r.last = percentile(ok, 100)
			*into = append(*into, r)
			time.Sleep(2 * time.Second) // let the server close the connections
			return ctx.Err()
		}
	}
	for r := 0; r < o.burstRounds; r++ {
		if err := interleave(r, round(direct, &dr), round(proxy, &pr)); err != nil {
			return err
		}
	}
	worst := func(rs []result) result {
		w := rs[0]
		for _, r := range rs[1:] {
			if r.greeted < w.greeted {
				w = r
			}
		}
		return w
	}
	d, p := worst(dr), worst(pr)
	rep.add(row{"burst", fmt.Sprintf("greeted within %v, of %d (TLS)", o.burstTimeout, o.burst),
		fmt.Sprint(d.greeted), fmt.Sprint(p.greeted), ratio(float64(p.greeted), float64(d.greeted)),
		fmt.Sprintf("all %d", o.burst), verdict(p.greeted == o.burst)})
	rep.add(row{"burst", "time to greeting: median / last", ms(d.p50) + " / " + ms(d.last), ms(p.p50) + " / " + ms(p.last),
		ratio(float64(p.last), float64(d.last)), "-", info})
	for _, x := range []struct {
		name string
		r    result
	}{{"direct", d}, {"proxy", p}} {
		if x.r.err != nil {
			rep.note("burst %s: %d not greeted; e.g. %v", x.name, o.burst-x.r.greeted, x.r.err)
		}
	}
	return nil
}

// bulkResult holds a bulk-fetch comparison's figures.
type bulkResult struct {
	dRates, pRates []float64 // MB/s per measured round, direct and through the proxy
	proxyCPU       time.Duration
	proxyBytes     int64
	proxyIO        ioStats
}

// measureBulk runs "UID FETCH 1:* BODY.PEEK[]" of the mailbox selected on
// dc (direct) and pc (through the proxy), alternating: one unmeasured
// fetch per side (Dovecot's index and the page cache), then rounds
// measured ones, each of which must return at least minBytes.
func (e *env) measureBulk(ctx context.Context, dc, pc *client, rounds int, minBytes int64) (bulkResult, error) {
	var res bulkResult
	fetch := func(c *client, rates *[]float64, isProxy bool) func() error {
		return func() error {
			cpu0, io0 := e.proxy.cpuTime(), e.proxy.io()
			t0 := time.Now()
			st, n, err := c.do("UID FETCH 1:* BODY.PEEK[]")
			d := time.Since(t0)
			if err != nil {
				return err
			}
			if st != "OK" {
				return fmt.Errorf("UID FETCH: %s", st)
			}
			if n < minBytes {
				return fmt.Errorf("fetched %d bytes, less than the %d delivered", n, minBytes)
			}
			if rates != nil {
				*rates = append(*rates, float64(n)/1e6/d.Seconds())
				if isProxy {
					res.proxyCPU += e.proxy.cpuTime() - cpu0
					res.proxyIO = res.proxyIO.add(e.proxy.io().sub(io0))
					res.proxyBytes += n
				}
			}
			return nil
		}
	}
	if err := interleave(0, fetch(dc, nil, false), fetch(pc, nil, true)); err != nil {
		return res, err
	}
	for r := 0; r < rounds && ctx.Err() == nil; r++ {
		if err := interleave(r, fetch(dc, &res.dRates, false), fetch(pc, &res.pRates, true)); err != nil {
			return res, err
		}
	}
	return res, ctx.Err()
}
