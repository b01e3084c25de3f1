package merge

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"imapproxy/store"
)

// TestTransferFaults interrupts cross-account MOVEs and COPYs at random
// points, many times, with a seeded RNG: the engine "crashes" (stops
// dead, and recovery runs on a fresh store handle with new connections,
// as after a restart), an upstream's connections are cut (at a step or
// after a random delay, so also in the middle of a literal), or the
// command's context is cancelled. After each recovery no message may be
// lost or duplicated: for MOVE the two mailboxes together hold every
// message once; for COPY the source holds all and the target at most one
// of each; at the end everything arrived.
func TestTransferFaults(t *testing.T) {
	for _, kind := range []store.TransferKind{store.TransferMove, store.TransferCopy} {
		t.Run(string(kind), func(t *testing.T) { testTransferFaults(t, kind) })
	}
}

func testTransferFaults(t *testing.T, kind store.TransferKind) {
	e := newTransferEnv(t, transferCaps, transferCaps)
	// A new seed each run finds more; IMAPPROXY_TEST_SEED repeats one.
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("IMAPPROXY_TEST_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (IMAPPROXY_TEST_SEED repeats it)", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	msgs := genMessages(rng, 120, 100<<10)
	fill(t, e.src, "INBOX", msgs)
	want := wantKeys(msgs)
	st := e.st
	faults := map[string]int{}

	rounds := 0
	for round := 0; round < 300; round++ {
		var todo []uint32
		if kind == store.TransferMove {
			for _, u := range uidsOf(t, e.src, "INBOX") {
				todo = append(todo, uint32(u))
			}
		} else {
			// COPY what the target lacks.
			have := contents(t, e.dst.dial(), "Archive")
			all := uidsOf(t, e.src, "INBOX")
			if len(have) == len(msgs) {
				break
			}
			for i, u := range all {
				if have[msgKey(msgs[i].body, msgs[i].flags, msgs[i].date)] == 0 {
					todo = append(todo, uint32(u))
				}
			}
		}
		if len(todo) == 0 {
			break
		}
		// A few at a time, so that there are many rounds to break.
		rng.Shuffle(len(todo), func(i, j int) { todo[i], todo[j] = todo[j], todo[i] })
		todo = todo[:min(len(todo), 1+rng.IntN(6))]
		rounds++
		eng := e.engine(st)
		ctx, cancel := context.WithCancel(t.Context())
		crashed := false
		eng.fault = func(step string) error {
			if rng.IntN(12) != 0 {
				return nil
			}
			switch rng.IntN(4) {
			case 0:
				faults["crash at "+step]++
				crashed = true
				return errors.New("simulated crash")
			case 1:
				faults["target cut at "+step]++
				e.dst.kill()
			case 2:
				faults["source cut at "+step]++
				e.src.kill()
			default:
				faults["cancel at "+step]++
				cancel()
			}
			return nil
		}
		// A cut after a random delay lands anywhere, literals included.
		var wg sync.WaitGroup
		var cut atomic.Bool
		stop := make(chan struct{})
		if rng.IntN(3) == 0 {
			delay := time.Duration(rng.IntN(30)) * time.Millisecond
			victim := e.src
			if rng.IntN(2) == 0 {
				victim = e.dst
			}
			wg.Go(func() {
				select {
				case <-time.After(delay):
					cut.Store(true)
					victim.kill()
				case <-stop:
				}
			})
		}
		req := TransferRequest{Kind: kind, SrcAccount: "src", SrcMailbox: "INBOX", DstAccount: "dst", DstMailbox: "Archive"}
		for _, u := range todo {
			req.UIDs = append(req.UIDs, imapUID(u))
		}
		_, err := eng.Run(ctx, req)
		close(stop)
		wg.Wait()
		cancel()
		if cut.Load() {
			faults["cut after a delay"]++
		}
		if err != nil {
			faults["failed runs"]++
		}
		if crashed {
			// A restart: a fresh store handle on the same file, new
			// connections.
			st = e.openStore()
		}
		rec := e.engine(st)
		for try := 0; ; try++ {
			_, err := rec.Recover(t.Context())
			if err == nil {
				break
			}
			if try == 5 {
				t.Fatalf("round %d: recovery keeps failing: %v", round, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if rows := unfinished(t, st); len(rows) != 0 {
			t.Fatalf("round %d: unfinished after recovery: %+v", round, rows)
		}
		srcHas, dstHas := contents(t, e.src.dial(), "INBOX"), contents(t, e.dst.dial(), "Archive")
		if kind == store.TransferMove {
			if d := diffKeys(sumKeys(srcHas, dstHas), want); d != "" {
				t.Fatalf("round %d: source and target together: %s", round, d)
			}
		} else {
			if d := diffKeys(srcHas, want); d != "" {
				t.Fatalf("round %d: source: %s", round, d)
			}
			for k, n := range dstHas {
				if n > 1 || want[k] == 0 {
					t.Fatalf("round %d: target has %d of %s", round, n, k)
				}
			}
		}
	}
	if d := diffKeys(contents(t, e.dst.dial(), "Archive"), want); d != "" {
		t.Errorf("target at the end: %s", d)
	}
	t.Logf("%d rounds; faults: %v", rounds, faults)
}

// imapUID converts for requests.
func imapUID(u uint32) imap.UID { return imap.UID(u) }
