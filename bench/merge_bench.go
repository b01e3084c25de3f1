package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// mergeSyncTimeout bounds each command of the merge benchmarks: the first
// SELECT of the unified INBOX syncs every message of both accounts.
const mergeSyncTimeout = 5 * time.Minute

// selectFetch runs SELECT INBOX and UID FETCH 1:* (FLAGS) on c and checks
// that both see want messages. It returns the time of each command.
func selectFetch(c *client, want int) (sel, fetch time.Duration, err error) {
	t0 := time.Now()
	n, err := c.exists("SELECT INBOX")
	if err != nil {
		return 0, 0, err
	}
	t1 := time.Now()
	if n != want {
		return 0, 0, fmt.Errorf("SELECT INBOX: %d EXISTS, want %d", n, want)
	}
	k, err := c.fetchCount("UID FETCH 1:* (FLAGS)")
	if err != nil {
		return 0, 0, err
	}
	if k != want {
		return 0, 0, fmt.Errorf("UID FETCH 1:* (FLAGS): %d responses, want %d", k, want)
	}
	return t1.Sub(t0), time.Since(t1), nil
}

// benchMergeSelect measures SELECT INBOX + UID FETCH 1:* (FLAGS) of the
// unified INBOX (both accounts' INBOXes) through the proxy against the same
// on each account directly. The first SELECT through the proxy, which
// syncs every message, is reported apart.
func benchMergeSelect(ctx context.Context, e *env, o *options, rep *report) error {
	cs, err := e.loginMergeSides(ctx)
	if err != nil {
		return err
	}
	defer closeAll(cs[:])
	// The direct accounts first, so that Dovecot has built its indexes
	// before the proxy's first sync reads them.
	for _, c := range cs[1:] {
		if _, _, err := selectFetch(c, o.mergeMsgs); err != nil {
			return err
		}
	}
	firstSel, firstFetch, err := selectFetch(cs[0], 2*o.mergeMsgs)
	if err != nil {
		return fmt.Errorf("first sync: %w", err)
	}

	var times [3][]time.Duration
	var pSel, pFetch []time.Duration // the proxy's SELECT and FETCH apart
	var pIO ioStats                  // the proxy's I/O during its measured rounds
	measure := func(i int, into *[]time.Duration) error {
		want := o.mergeMsgs
		if i == 0 {
			want *= 2
		}
		io0 := e.proxy.io()
		sel, fetch, err := selectFetch(cs[i], want)
		if into != nil && i == 0 {
			pIO = pIO.add(e.proxy.io().sub(io0))
		}
		if into != nil {
			*into = append(*into, sel+fetch)
			if i == 0 {
				pSel, pFetch = append(pSel, sel), append(pFetch, fetch)
			}
		}
		return err
	}
	// Two unmeasured rounds, then the order of the three sides rotates.
	for r := -2; r < o.mergeRounds && ctx.Err() == nil; r++ {
		for k := 0; k < 3; k++ {
			i := (k + max(r, 0)) % 3
			var into *[]time.Duration
			if r >= 0 {
				into = &times[i]
			}
			if err := measure(i, into); err != nil {
				return fmt.Errorf("%s: %w", []string{"proxy", "direct work", "direct home"}[i], err)
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	pMed := percentile(times[0], 50)
	wMed, hMed := percentile(times[1], 50), percentile(times[2], 50)
	slower := max(wMed, hMed)
	r := float64(pMed) / float64(slower)
	rep.add(row{"mergeselect", fmt.Sprintf("first sync: SELECT, %d msgs (2 accounts)", 2*o.mergeMsgs), "-",
		ms(firstSel), "-", "-", info})
	rep.add(row{"mergeselect", fmt.Sprintf("median SELECT+FETCH FLAGS, %d msgs, n=%d", 2*o.mergeMsgs, len(times[0])),
		ms(slower) + " (slower account)", ms(pMed),
		ratio(float64(pMed), float64(slower)), "≤ 1.5×", verdict(r <= 1.5)})
	rep.note("mergeselect: first sync through the proxy: SELECT INBOX %s, then UID FETCH 1:* (FLAGS) %s; later rounds, proxy medians: SELECT %s, FETCH %s; direct medians: work %s, home %s (%d messages each); p90: proxy %s, work %s, home %s",
		ms(firstSel), ms(firstFetch), ms(percentile(pSel, 50)), ms(percentile(pFetch, 50)), ms(wMed), ms(hMed), o.mergeMsgs,
		ms(percentile(times[0], 90)), ms(percentile(times[1], 90)), ms(percentile(times[2], 90)))
	if n := len(times[0]); n > 0 {
		rep.note("mergeselect: per proxied SELECT + FETCH round the proxy made %.0f read and %.0f write system calls (client and both upstreams), %.0f bytes per write",
			float64(pIO.readCalls)/float64(n), float64(pIO.writeCalls)/float64(n),
			float64(pIO.writeBytes)/float64(max(pIO.writeCalls, 1)))
	}
	return nil
}

// benchMergeBulk measures UID FETCH 1:* BODY.PEEK[] over the work
// account's Bulk mailbox: Work/Bulk through the merged account, Bulk
// directly.
func benchMergeBulk(ctx context.Context, e *env, o *options, rep *report) error {
	if e.mergeBulkMessages == 0 {
		return errors.New("no merge bulk mailbox")
	}
	proxy, work, _ := e.mergeSides()
	open := func(s side, box string) (*client, error) {
		c, err := login(ctx, s.addr, s.tls, s.user, s.pass, mergeSyncTimeout)
		if err != nil {
			return nil, err
		}
		c.growBuffer()
		n, err := c.exists("EXAMINE " + box)
		if err == nil && n != e.mergeBulkMessages {
			err = fmt.Errorf("EXAMINE %s: %d EXISTS, want %d", box, n, e.mergeBulkMessages)
		}
		if err != nil {
			c.close()
			return nil, err
		}
		return c, nil
	}
	dc, err := open(work, mergeBulkBox)
	if err != nil {
		return err
	}
	defer dc.close()
	pc, err := open(proxy, mergeWorkPre+"/"+mergeBulkBox)
	if err != nil {
		return err
	}
	defer pc.close()

	res, err := e.measureBulk(ctx, dc, pc, o.bulkRounds, e.mergeBulkBytes)
	if err != nil {
		return err
	}
	dRates, pRates, proxyCPU, proxyBytes, proxyIO := res.dRates, res.pRates, res.proxyCPU, res.proxyBytes, res.proxyIO
	dAll, pAll := fmt.Sprint(roundAll(dRates)), fmt.Sprint(roundAll(pRates))
	dMed, pMed := medianFloat(dRates), medianFloat(pRates)
	rep.add(row{"mergebulk", fmt.Sprintf("MB/s, %s/%s %.0f MB, median of %d", mergeWorkPre, mergeBulkBox,
		float64(e.mergeBulkBytes)/1e6, o.bulkRounds),
		fmt.Sprintf("%.0f", dMed), fmt.Sprintf("%.0f", pMed), ratio(pMed, dMed),
		"≥ 0.8×", verdict(pMed/dMed >= 0.8)})
	rep.note("mergebulk: rounds direct %s MB/s, proxy %s MB/s; the proxy spent %.2f CPU-seconds per GB relayed",
		dAll, pAll, proxyCPU.Seconds()/(float64(proxyBytes)/1e9))
	if proxyIO.readCalls > 0 {
		mb := float64(proxyBytes) / 1e6
		rep.note("mergebulk: the proxy made %.0f read and %.0f write system calls per MB relayed; average %.0f bytes per read, %.0f per write (TLS ciphertext)",
			float64(proxyIO.readCalls)/mb, float64(proxyIO.writeCalls)/mb,
			float64(proxyIO.readBytes)/float64(proxyIO.readCalls), float64(proxyIO.writeBytes)/float64(max(proxyIO.writeCalls, 1)))
	}
	return nil
}

// benchMergeRSS measures the proxy's resident memory per idle merged
// session (logged in, unified INBOX selected) in a fresh proxy process,
// and counts its connections to the two Dovecots with one session and with
// o.mergeSessions sessions of the same user.
func benchMergeRSS(ctx context.Context, e *env, o *options, rep *report) error {
	if err := e.restartProxy(); err != nil {
		return err
	}
	proxy, _, _ := e.mergeSides()
	proxy.name = "merged"
	upstreams := []string{e.dov.TLSAddr, e.dov2.TLSAddr}
	// Warm-up: the hub, its pools and watchers, the sync after the
	// restart, the first TLS handshakes.
	warm, err := openMerged(ctx, proxy, 10)
	if err != nil {
		return err
	}
	closeAll(warm)
	one, err := openMerged(ctx, proxy, 1)
	if err != nil {
		return err
	}
	defer closeAll(one)
	time.Sleep(o.settle)
	before, err := e.proxy.rssKiB()
	if err != nil {
		return err
	}
	conns1, err := e.proxy.upstreamConns(upstreams...)
	if err != nil {
		return err
	}
	m0, err0 := scrapeMetrics(e.adminAddr, goMetrics...)
	added := o.mergeSessions - 1
	cs, err := openMerged(ctx, proxy, added)
	if err != nil {
		return err
	}
	defer closeAll(cs)
	time.Sleep(o.settle)
	after, err := e.proxy.rssKiB()
	if err != nil {
		return err
	}
	connsN, err := e.proxy.upstreamConns(upstreams...)
	if err != nil {
		return err
	}
	m1, err1 := scrapeMetrics(e.adminAddr, goMetrics...)

	per := float64(after-before) / float64(max(added, 1))
	rep.add(row{"mergerss", fmt.Sprintf("RSS per idle merged session, %d of one user", o.mergeSessions), "-",
		fmt.Sprintf("%.1f KiB", per), "-", "≤ 64 KiB", verdict(per <= 64)})
	// The bound: each account's pool (4, merge.Manager's default) and one
	// watcher for the selected INBOX; the first Dovecot also has the
	// route-mode upstream's 4 prepared connections.
	bound := []int{4 + 1 + 4, 4 + 1}
	ok := true
	for i := range conns1 {
		ok = ok && (connsN[i] <= conns1[i] || connsN[i] <= bound[i])
	}
	rep.add(row{"mergerss", fmt.Sprintf("upstream conns (work+home), 1 vs %d sessions", o.mergeSessions),
		fmt.Sprintf("%d+%d", conns1[0], conns1[1]), fmt.Sprintf("%d+%d", connsN[0], connsN[1]), "-",
		"no growth", verdict(ok)})
	rep.note("mergerss: VmRSS %d KiB with 1 session, %d KiB with %d; per session = delta / %d. Upstream connections are the proxy's established TCP connections to each Dovecot's TLS port (/proc/PID/net/tcp); the first Dovecot's count includes the route-mode upstream's prepared connections (4)",
		before, after, o.mergeSessions, added)
	if err0 == nil && err1 == nil {
		n := float64(max(added, 1))
		rep.note("mergerss, per session from the Go runtime: %.1f goroutines, stacks %.1f KiB, heap in use %.1f KiB (live objects %.1f KiB)",
			(m1["go_goroutines"]-m0["go_goroutines"])/n,
			(m1["go_memstats_stack_inuse_bytes"]-m0["go_memstats_stack_inuse_bytes"])/1024/n,
			(m1["go_memstats_heap_inuse_bytes"]-m0["go_memstats_heap_inuse_bytes"])/1024/n,
			(m1["go_memstats_heap_alloc_bytes"]-m0["go_memstats_heap_alloc_bytes"])/1024/n)
	}
	return nil
}

// openMerged opens n merged sessions with the unified INBOX selected, 8 at
// a time.
func openMerged(ctx context.Context, s side, n int) ([]*client, error) {
	return openSessions(ctx, s, n, 8, "SELECT INBOX")
}
