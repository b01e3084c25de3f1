package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"imapproxy/internal/dovecot"
	"imapproxy/internal/sample"
)

// mergeMoveBox is the mailbox the mergemove benchmark moves back and
// forth: "Move" on each Dovecot, Work/Move and Home/Move through the
// proxy.
const mergeMoveBox = "Move"

// mergeMoveBatch is how many moved messages the direct client deletes
// with one UID STORE + UID EXPUNGE, as the proxy's engine does.
const mergeMoveBatch = 64

// heapMetric is the proxy's Go heap in use, from its /metrics.
const heapMetric = "go_memstats_heap_inuse_bytes"

// benchMergeMove measures a cross-account MOVE of every message of Move
// (o.mergeMoveMB megabytes of 100 kB messages) through the proxy (UID
// MOVE 1:* from Work/Move to Home/Move, or back) against the same move
// done by a direct client (UID FETCH BODY.PEEK[] from one Dovecot, APPEND
// to the other, then UID STORE \Deleted + UID EXPUNGE in batches), one
// message at a time on both sides. The mail goes back and forth, so each
// round moves it from where the previous one left it; the order of the
// sides alternates. The proxy's heap in use is sampled from /metrics
// during its moves.
func benchMergeMove(ctx context.Context, e *env, o *options, rep *report) error {
	n, total, err := e.fillMergeMove(o)
	if err != nil {
		return err
	}
	cs, err := e.loginMergeSides(ctx)
	if err != nil {
		return err
	}
	defer closeAll(cs[:])
	for _, c := range cs {
		c.growBuffer()
	}
	pc, direct := cs[0], [2]*client{cs[1], cs[2]}
	prefixes := [2]string{mergeWorkPre, mergeHomePre}

	if err := e.proxy.resetPeakRSS(); err != nil {
		rep.note("mergemove: could not reset the proxy's VmHWM: %v", err)
	}
	base, err := scrapeMetrics(e.adminAddr, heapMetric)
	if err != nil {
		return fmt.Errorf("proxy metrics: %w", err)
	}
	where := 0 // the account holding the mail: 0 work, 1 home
	var dTimes, pTimes []time.Duration
	var peak float64
	var pIO ioStats // the proxy's I/O during its moves
	for r := 0; r < o.mergeMoveRounds && ctx.Err() == nil; r++ {
		for k := range 2 {
			useProxy := (r+k)%2 == 0
			var took time.Duration
			if useProxy {
				src := prefixes[where] + "/" + mergeMoveBox
				dst := prefixes[1-where] + "/" + mergeMoveBox
				hs := sampleHeap(e.adminAddr, 50*time.Millisecond)
				io0 := e.proxy.io()
				took, err = proxyMove(pc, src, dst, n)
				pIO = pIO.add(e.proxy.io().sub(io0))
				p, herr := hs.finish()
				if herr != nil {
					return fmt.Errorf("proxy metrics: %w", herr)
				}
				peak = max(peak, p)
				pTimes = append(pTimes, took)
			} else {
				took, err = directMove(direct[where], direct[1-where], mergeMoveBox, n)
				dTimes = append(dTimes, took)
			}
			if err != nil {
				return err
			}
			if err := checkMoved(direct[1-where], direct[where], n); err != nil {
				return err
			}
			where = 1 - where
			logf("mergemove: round %d, %s: %v", r+1, map[bool]string{true: "proxy", false: "direct"}[useProxy], took.Round(time.Millisecond))
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	mb := float64(total) / 1e6
	rate := func(ds []time.Duration) (msgs, mbs float64, all []float64) {
		for _, d := range ds {
			all = append(all, mb/d.Seconds())
		}
		m := medianFloat(all)
		return m * float64(n) / mb, m, all
	}
	dMsgs, dMB, dAll := rate(dTimes)
	pMsgs, pMB, pAll := rate(pTimes)
	what := fmt.Sprintf("%d msgs, %.0f MB, median of %d", n, mb, len(pTimes))
	rep.add(row{"mergemove", "messages/s, " + what, fmt.Sprintf("%.0f", dMsgs), fmt.Sprintf("%.0f", pMsgs),
		ratio(pMsgs, dMsgs), "≥ 0.9×", verdict(pMsgs/dMsgs >= 0.9)})
	rep.add(row{"mergemove", "MB/s, " + what, fmt.Sprintf("%.1f", dMB), fmt.Sprintf("%.1f", pMB),
		ratio(pMB, dMB), "≥ 0.9×", verdict(pMB/dMB >= 0.9)})
	peakMiB := peak / (1 << 20)
	rep.add(row{"mergemove", fmt.Sprintf("proxy peak heap in use during a %.0f MB move", mb), "-",
		fmt.Sprintf("%.1f MiB", peakMiB), "-", "< 64 MiB", verdict(peakMiB < 64)})
	rep.note("mergemove: rounds direct %v MB/s, proxy %v MB/s; heap in use %.1f MiB before the moves, at most %.1f MiB during them (sampled every 50 ms)",
		roundAll(dAll), roundAll(pAll), base[heapMetric]/(1<<20), peakMiB)
	if moved := float64(n * len(pTimes)); pIO.writeCalls > 0 {
		rep.note("mergemove: per message moved the proxy made %.1f read and %.1f write system calls (the SELECT before each move included)",
			float64(pIO.readCalls)/moved, float64(pIO.writeCalls)/moved)
	}
	if kib, err := procStatusKiB(e.proxy.pid, "VmHWM:"); err == nil {
		rep.note("mergemove: the proxy's peak RSS (VmHWM, reset before the first round) was %.1f MiB", float64(kib)/1024)
	}
	return nil
}

// loginMergeSides logs in to the merged account through the proxy and to
// both accounts directly (mergeSides), in that order.
func (e *env) loginMergeSides(ctx context.Context) ([3]*client, error) {
	var cs [3]*client
	proxy, work, home := e.mergeSides()
	for i, s := range []side{proxy, work, home} {
		c, err := login(ctx, s.addr, s.tls, s.user, s.pass, mergeSyncTimeout)
		if err != nil {
			closeAll(cs[:i])
			return cs, err
		}
		cs[i] = c
	}
	return cs, nil
}

// fillMergeMove delivers o.mergeMoveMB megabytes of 100 kB messages, a
// third of them \Seen and some \Flagged, to Move on the first Dovecot,
// and creates Move on the second. It returns the count and total size.
func (e *env) fillMergeMove(o *options) (int, int64, error) {
	start := time.Now()
	size := mergeBulkKB * 1000
	n := max(1, o.mergeMoveMB*1_000_000/size)
	var total int64
	if err := e.dov2.DeliverMessages(userMergeUp, mergeMoveBox); err != nil {
		return 0, 0, err
	}
	const chunk = 100
	for i := 0; i < n; i += chunk {
		bodies := sample.Generate(int64(700_000+i), min(chunk, n-i), size)
		msgs := make([]dovecot.Message, len(bodies))
		for j, b := range bodies {
			msgs[j].Body = b
			total += int64(len(b))
			switch (i + j) % 6 {
			case 0, 1:
				msgs[j].Flags = []string{`\Seen`}
			case 2:
				msgs[j].Flags = []string{`\Seen`, `\Flagged`}
			}
		}
		if err := e.dov.DeliverMessages(userMergeUp, mergeMoveBox, msgs...); err != nil {
			return 0, 0, fmt.Errorf("deliver merge move: %w", err)
		}
	}
	logf("mergemove: %d messages (%.1f MB) delivered in %v", n, float64(total)/1e6, time.Since(start).Round(time.Millisecond))
	return n, total, nil
}

// proxyMove selects src through the proxy until it shows n messages (the
// proxy learns of the direct client's moves from its watchers), then
// times UID MOVE 1:* to dst.
func proxyMove(c *client, src, dst string, n int) (time.Duration, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		k, err := c.exists("SELECT " + src)
		if err != nil {
			return 0, err
		}
		if k == n {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("SELECT %s through the proxy: %d messages, want %d", src, k, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	start := time.Now()
	if err := c.ok("UID MOVE 1:* " + dst); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// checkMoved checks with the direct clients that the target holds n
// messages and the source none.
func checkMoved(dst, src *client, n int) error {
	for _, x := range []struct {
		c    *client
		want int
	}{{dst, n}, {src, 0}} {
		k, err := x.c.exists("EXAMINE " + mergeMoveBox)
		if err != nil {
			return err
		}
		if k != x.want {
			return fmt.Errorf("after a move, a Dovecot's %s holds %d messages, want %d", mergeMoveBox, k, x.want)
		}
	}
	return nil
}

// directMove moves every message of box from src to dst as a simple
// client does, one message at a time: UID FETCH (FLAGS INTERNALDATE
// BODY.PEEK[]), APPEND with those flags and date, and every
// mergeMoveBatch messages UID STORE +FLAGS.SILENT (\Deleted) and UID
// EXPUNGE of them. The SELECT and the UID SEARCH before are not timed.
func directMove(src, dst *client, box string, n int) (time.Duration, error) {
	if err := src.ok("SELECT " + box); err != nil {
		return 0, err
	}
	uids, err := src.searchAll()
	if err != nil {
		return 0, err
	}
	if len(uids) != n {
		return 0, fmt.Errorf("direct: %s holds %d messages, want %d", box, len(uids), n)
	}
	start := time.Now()
	var m fetched
	var pending []string
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		set := strings.Join(pending, ",")
		pending = pending[:0]
		if err := src.ok(`UID STORE ` + set + ` +FLAGS.SILENT (\Deleted)`); err != nil {
			return err
		}
		return src.ok("UID EXPUNGE " + set)
	}
	for _, u := range uids {
		if err := src.fetchMessage(u, &m); err != nil {
			return 0, err
		}
		if err := dst.appendMessage(box, &m); err != nil {
			return 0, err
		}
		if pending = append(pending, u); len(pending) == mergeMoveBatch {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// fetched is one message as the direct client fetched it; its buffers
// are reused from message to message.
type fetched struct {
	flags, date string
	body        []byte
	out         []byte // the APPEND command
}

// searchAll returns the UIDs of UID SEARCH ALL.
func (c *client) searchAll() ([]string, error) {
	tag, err := c.send("UID SEARCH ALL")
	if err != nil {
		return nil, err
	}
	var uids []string
	for {
		line, err := c.readLine()
		if err != nil {
			return nil, err
		}
		s := string(trimCRLF(line))
		if rest, ok := strings.CutPrefix(s, tag+" "); ok {
			if !strings.HasPrefix(rest, "OK") {
				return nil, fmt.Errorf("UID SEARCH: %s", rest)
			}
			return uids, nil
		}
		if rest, ok := strings.CutPrefix(s, "* SEARCH"); ok {
			uids = append(uids, strings.Fields(rest)...)
		}
	}
}

var (
	fetchFlagsRe = regexp.MustCompile(`FLAGS \(([^)]*)\)`)
	fetchDateRe  = regexp.MustCompile(`INTERNALDATE "([^"]*)"`)
)

// fetchMessage fetches one message's flags (without \Recent), date and
// body into m.
func (c *client) fetchMessage(uid string, m *fetched) error {
	tag, err := c.send("UID FETCH " + uid + " (FLAGS INTERNALDATE BODY.PEEK[])")
	if err != nil {
		return err
	}
	got := false
	for {
		line, err := c.readLine()
		if err != nil {
			return err
		}
		if rest, ok := strings.CutPrefix(string(trimCRLF(line)), tag+" "); ok {
			if !strings.HasPrefix(rest, "OK") {
				return fmt.Errorf("UID FETCH %s: %s", uid, rest)
			}
			if !got {
				return fmt.Errorf("UID FETCH %s: no body", uid)
			}
			return nil
		}
		size, ok := literalSize(trimCRLF(line))
		if !ok {
			continue
		}
		f, d := fetchFlagsRe.FindSubmatch(line), fetchDateRe.FindSubmatch(line)
		if f == nil || d == nil {
			return fmt.Errorf("UID FETCH %s: no FLAGS or INTERNALDATE before the body: %q", uid, trimCRLF(line))
		}
		flags := strings.Fields(string(f[1]))
		flags = slices.DeleteFunc(flags, func(s string) bool { return strings.EqualFold(s, `\Recent`) })
		m.flags, m.date = strings.Join(flags, " "), string(d[1])
		m.body = slices.Grow(m.body[:0], int(size))[:size]
		if err := c.readFull(m.body); err != nil {
			return err
		}
		got = true
	}
}

// readFull fills b from the connection, buffered bytes first.
func (c *client) readFull(b []byte) error {
	for len(b) > 0 {
		if c.r == c.e {
			if err := c.fill(); err != nil {
				return err
			}
		}
		k := copy(b, c.buf[c.r:c.e])
		c.r += k
		b = b[k:]
	}
	return nil
}

// appendMessage APPENDs m to box in one write (LITERAL+).
func (c *client) appendMessage(box string, m *fetched) error {
	c.tagN++
	tag := "b" + strconv.Itoa(c.tagN)
	m.out = fmt.Appendf(m.out[:0], "%s APPEND %s (%s) \"%s\" {%d+}\r\n", tag, box, m.flags, m.date, len(m.body))
	m.out = append(append(m.out, m.body...), '\r', '\n')
	if c.timeout > 0 {
		c.conn.SetDeadline(time.Now().Add(c.timeout))
	}
	if _, err := c.conn.Write(m.out); err != nil {
		return err
	}
	st, _, err := c.drain(tag)
	if err != nil {
		return err
	}
	if st != "OK" {
		return fmt.Errorf("APPEND: %s", st)
	}
	return nil
}

// heapSampler reads the proxy's heap in use from /metrics at an interval
// until finish.
type heapSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	peak float64
	err  error
}

// sampleHeap starts sampling addr's /metrics every interval.
func sampleHeap(addr string, interval time.Duration) *heapSampler {
	h := &heapSampler{stop: make(chan struct{})}
	h.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			m, err := scrapeMetrics(addr, heapMetric)
			if err == nil {
				v, ok := m[heapMetric]
				if !ok {
					err = errors.New("no " + heapMetric)
				}
				h.peak = max(h.peak, v)
			}
			if err != nil && h.err == nil {
				h.err = err
			}
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	})
	return h
}

// finish stops the sampler and returns the
// largest value seen.
func (h *heapSampler) finish() (float64, error) {
	close(h.stop)
	h.wg.Wait()
	return h.peak, h.err
}
