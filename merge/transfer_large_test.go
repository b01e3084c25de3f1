package merge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"imapproxy/store"
)

// The 50 MiB test runs its upstreams in a child process (this test binary
// again, TestTransferHelperUpstreams): imapmemserver keeps messages and
// whole literals in memory, which would hide the engine's heap use.

const helperEnv = "IMAPPROXY_TRANSFER_HELPER"

// hashAppendSession is an upstream session whose APPEND prints the
// message's SHA-256 instead of keeping it.
type hashAppendSession struct {
	imapserver.Session
	mu       *sync.Mutex
	n        *int
	validity *uint32
}

func (s hashAppendSession) Select(mailbox string, options *imap.SelectOptions) (*imap.SelectData, error) {
	data, err := s.Session.Select(mailbox, options)
	if err == nil {
		s.mu.Lock()
		*s.validity = data.UIDValidity
		s.mu.Unlock()
	}
	return data, err
}

func (s hashAppendSession) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	*s.n++
	fmt.Printf("sum %x\n", h.Sum(nil))
	return &imap.AppendData{UID: imap.UID(1000 + *s.n), UIDValidity: *s.validity}, nil
}

// bigMessage returns a message of about size bytes.
func bigMessage(size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 100)
	b.WriteString("From: a@example.org\r\nSubject: big\r\nMessage-ID: <big@example.org>\r\n\r\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%07d abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghij\r\n", i)
	}
	return b.Bytes()
}

// TestTransferHelperUpstreams is the child process of
// TestTransferLargeHeap: a source upstream holding one 50 MiB message and
// a target that hashes what is appended. It prints their addresses and
// serves until its standard input closes.
func TestTransferHelperUpstreams(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("the child process of TestTransferLargeHeap")
	}
	var mu sync.Mutex
	var n int
	var validity uint32
	src := startTransferMem(t, transferCaps, nil)
	fill(t, src, "INBOX", []testMsg{{body: bigMessage(50 << 20), date: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}})
	dst := startTransferMem(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}}, func(s imapserver.Session) imapserver.Session {
		return hashAppendSession{Session: s, mu: &mu, n: &n, validity: &validity}
	})
	fmt.Printf("addrs %s %s\n", src.addr, dst.addr)
	io.Copy(io.Discard, os.Stdin)
}

// heapPeak samples HeapInuse until stop is closed and returns the peak.
func heapPeak(stop <-chan struct{}) uint64 {
	var peak uint64
	var ms runtime.MemStats
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		select {
		case <-stop:
			return peak
		case <-t.C:
		}
	}
}

// TestTransferLargeHeap copies a 50 MiB message between accounts and
// checks that the heap never grows by anything near its size: the body
// streams from the FETCH literal into the APPEND literal.
func TestTransferLargeHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("50 MiB")
	}
	want := sha256.Sum256(bigMessage(50 << 20))
	cmd := exec.Command(os.Args[0], "-test.run=^TestTransferHelperUpstreams$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.Stderr = tLogWriter{t}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	})
	defer func() {
		stdin.Close()
		cmd.Wait()
		wg.Wait()
	}()
	next := func(prefix string) string {
		t.Helper()
		timeout := time.After(time.Minute)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("child ended before %q", prefix)
				}
				if rest, found := strings.CutPrefix(l, prefix+" "); found {
					return rest
				}
			case <-timeout:
				t.Fatalf("no %q from the child", prefix)
			}
		}
	}
	addrs := strings.Fields(next("addrs"))
	if len(addrs) != 2 {
		t.Fatalf("addresses %v", addrs)
	}
	e := &transferEnv{t: t, src: &memUpstream{t: t, addr: addrs[0]}, dst: &memUpstream{t: t, addr: addrs[1]}}
	e.path = t.TempDir() + "/state.db"
	e.st = e.openStore()
	eng := e.engine(e.st)
	uids := uidsOf(t, e.src, "INBOX")

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	stop := make(chan struct{})
	peakc := make(chan uint64, 1)
	go func() { peakc <- heapPeak(stop) }()
	start := time.Now()
	res, err := eng.Run(context.Background(), TransferRequest{Kind: store.TransferCopy, SrcAccount: "src", SrcMailbox: "INBOX",
		UIDs: uids, DstAccount: "dst", DstMailbox: "Archive"})
	elapsed := time.Since(start)
	close(stop)
	peak := <-peakc
	if err != nil {
		t.Fatal(err)
	}
	growth := int64(peak) - int64(base)
	t.Logf("50 MiB COPY in %v (%.0f MB/s); HeapInuse %.1f MiB before, peak %.1f MiB (growth %.1f MiB)",
		elapsed, 50*1.048576/elapsed.Seconds(), float64(base)/(1<<20), float64(peak)/(1<<20), float64(growth)/(1<<20))
	if sum := next("sum"); sum != hex.EncodeToString(want[:]) || len(res.Done) != 1 {
		t.Errorf("target got %s, want %x; result %+v", sum, want, res)
	}
	if growth > 16<<20 {
		t.Errorf("heap grew by %.1f MiB during the copy, want < 16 MiB", float64(growth)/(1<<20))
	}
}
