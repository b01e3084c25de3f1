package proxy

// Cross-account COPY and MOVE of a merged account through the proxy,
// against two real Dovecot 2.3 instances (internal/dovecot): 1,000
// messages moved and compared byte for byte with what each Dovecot holds,
// COPYUID checked against FETCH (the kill tests are in
// merge_kill_dovecot_test.go). Skipped when Dovecot is not installed,
// failing instead when IMAPPROXY_TEST_DOVECOT=1.

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"imapproxy/internal/dovecot"
)

// transferMessages returns n messages named by tag, of 300 bytes to about
// maxSize, with varied system flags and distinct whole-second dates.
func transferMessages(rng *rand.Rand, tag string, n, maxSize int) []dovecot.Message {
	flagSets := [][]string{nil, {`\Seen`}, {`\Seen`, `\Flagged`}, {`\Answered`, `\Seen`}, {`\Draft`}, {`\Flagged`}}
	base := time.Date(2024, 3, 1, 8, 0, 0, 0, time.UTC)
	out := make([]dovecot.Message, n)
	for i := range out {
		var b strings.Builder
		fmt.Fprintf(&b, "From: sender%d@example.org\r\nTo: alice@example.com\r\nSubject: %s %d\r\n"+
			"Message-ID: <%s.%d@example.org>\r\nDate: Fri, 1 Mar 2024 08:00:00 +0000\r\n\r\n", i, tag, i, tag, i)
		for b.Len() < 300+rng.IntN(maxSize) {
			fmt.Fprintf(&b, "%s line %d of message %d: %x\r\n", tag, b.Len(), i, rng.Uint64())
		}
		out[i] = dovecot.Message{
			Body:  []byte(b.String()),
			Flags: flagSets[rng.IntN(len(flagSets))],
			Date:  base.Add(time.Duration(i) * time.Minute),
		}
	}
	return out
}

// directMessage is one message as a Dovecot holds it.
type directMessage struct {
	uid   imap.UID
	sum   [32]byte
	flags string // sorted, without \Recent
	date  time.Time
}

func (m directMessage) same(o directMessage) bool {
	return m.sum == o.sum && m.flags == o.flags && m.date.Equal(o.date)
}

// flagString returns flags sorted and joined, without \Recent.
func flagString(flags []imap.Flag) string {
	var s []string
	for _, f := range flags {
		if !strings.EqualFold(string(f), `\Recent`) {
			s = append(s, string(f))
		}
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

// directState reads every message of a Dovecot's mailbox with a
// connection of its own: by Message-ID, each copy (more than one is a
// duplicate).
func directState(t *testing.T, d *dovecot.Server, mailbox string) map[string][]directMessage {
	t.Helper()
	c := dialDovecotClient(t, d, nil)
	defer c.Close()
	if _, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatalf("EXAMINE %s directly: %v", mailbox, err)
	}
	sec := &imap.FetchItemBodySection{Peek: true}
	out := make(map[string][]directMessage)
	cmd := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{sec},
	})
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		b, err := msg.Collect()
		if err != nil {
			t.Fatal(err)
		}
		body := b.FindBodySection(sec)
		id := messageID(body)
		out[id] = append(out[id], directMessage{uid: b.UID, sum: sha256.Sum256(body), flags: flagString(b.Flags), date: b.InternalDate})
	}
	if err := cmd.Close(); err != nil {
		t.Fatalf("UID FETCH 1:* directly in %s: %v", mailbox, err)
	}
	return out
}

// exactlyOnce checks that the mailboxes in parts together hold every
// message of want once, identical, and nothing else. It returns "" or
// what differs.
func exactlyOnce(want map[string]directMessage, parts ...map[string][]directMessage) string {
	seen := make(map[string]int)
	var bad []string
	for _, p := range parts {
		for id, copies := range p {
			for _, m := range copies {
				seen[id]++
				if w, ok := want[id]; !ok {
					bad = append(bad, "unexpected "+id)
				} else if !w.same(m) {
					bad = append(bad, fmt.Sprintf("%s differs (flags %q date %v, want %q %v)", id, m.flags, m.date, w.flags, w.date))
				}
			}
		}
	}
	for id := range want {
		switch n := seen[id]; {
		case n == 0:
			bad = append(bad, "lost "+id)
		case n > 1:
			bad = append(bad, fmt.Sprintf("%s %d times", id, n))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	slices.Sort(bad)
	if len(bad) > 10 {
		bad = append(bad[:10], fmt.Sprintf("and %d more", len(bad)-10))
	}
	return strings.Join(bad, "; ")
}

// single turns a state without duplicates into one message per ID.
func single(t *testing.T, s map[string][]directMessage) map[string]directMessage {
	t.Helper()
	out := make(map[string]directMessage, len(s))
	for id, copies := range s {
		if len(copies) != 1 {
			t.Fatalf("%s is there %d times", id, len(copies))
		}
		out[id] = copies[0]
	}
	return out
}

// proxyView returns, for the mailbox selected through the proxy, its
// UIDVALIDITY and the Message-ID and flags of each UID.
func proxyView(t *testing.T, c *imapclient.Client, mailbox string) (uint32, map[imap.UID]directMessage, map[imap.UID]string) {
	t.Helper()
	sd, err := c.Select(mailbox, nil).Wait()
	if err != nil {
		t.Fatalf("SELECT %s through the proxy: %v", mailbox, err)
	}
	sec := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Message-ID"}, Peek: true}
	bufs, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, Flags: true, BodySection: []*imap.FetchItemBodySection{sec},
	}).Collect()
	if err != nil {
		t.Fatalf("UID FETCH 1:* in %s through the proxy: %v", mailbox, err)
	}
	if len(bufs) != int(sd.NumMessages) {
		t.Errorf("%s through the proxy: %d EXISTS, %d FETCH responses", mailbox, sd.NumMessages, len(bufs))
	}
	flags := make(map[imap.UID]directMessage, len(bufs))
	ids := make(map[imap.UID]string, len(bufs))
	for _, b := range bufs {
		ids[b.UID] = messageID(b.FindBodySection(sec))
		flags[b.UID] = directMessage{uid: b.UID, flags: flagString(b.Flags)}
	}
	return sd.UIDValidity, flags, ids
}

// checkCopyUID checks a COPYUID (validity, src → dst) against what the
// proxy showed before (srcIDs) and shows now in the target (dstIDs).
func checkCopyUID(t *testing.T, what string, data *imap.CopyData, validity uint32, srcIDs, dstIDs map[imap.UID]string, want int) {
	t.Helper()
	if data == nil || data.UIDValidity != validity {
		t.Fatalf("%s: COPYUID %+v, target UIDVALIDITY %d", what, data, validity)
	}
	src, ok1 := data.SourceUIDs.Nums()
	dst, ok2 := data.DestUIDs.Nums()
	if !ok1 || !ok2 || len(src) != len(dst) || len(src) != want {
		t.Fatalf("%s: COPYUID with %d source and %d target UIDs, want %d", what, len(src), len(dst), want)
	}
	bad := 0
	for i := range src {
		if srcIDs[src[i]] == "" || srcIDs[src[i]] != dstIDs[dst[i]] {
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d COPYUID pairs do not match what FETCH shows", what, bad, len(src))
	}
}

func TestMergeTransferDovecot(t *testing.T) {
	work := dovecot.StartT(t, dovecot.Options{})
	home := dovecot.StartT(t, dovecot.Options{})
	rng := rand.New(rand.NewPCG(6, 1000))
	const n = 1000
	if err := work.DeliverMessages("alice", "Bulk", transferMessages(rng, "bulk", n, 16<<10)...); err != nil {
		t.Fatal(err)
	}
	for _, d := range []*dovecot.Server{home, work} {
		if err := d.DeliverMessages("alice", map[*dovecot.Server]string{home: "Bulk", work: "Copies"}[d]); err != nil {
			t.Fatal(err)
		}
	}
	p := startMergeProxyAt(t, mergeDovecotConfig(t, work, home), filepath.Join(t.TempDir(), "state.db"))
	c := dialMerged(t, p.addr, nil)

	want := single(t, directState(t, work, "Bulk"))
	if len(want) != n {
		t.Fatalf("work's Bulk holds %d messages, want %d", len(want), n)
	}
	_, _, srcIDs := proxyView(t, c, "Work/Bulk")
	if len(srcIDs) != n {
		t.Fatalf("Work/Bulk through the proxy: %d messages, want %d", len(srcIDs), n)
	}
	if _, _, ids := proxyView(t, c, "Home/Bulk"); len(ids) != 0 {
		t.Fatalf("Home/Bulk through the proxy: %d messages before the move", len(ids))
	}

	// UID MOVE of all 1,000 across accounts.
	if _, err := c.Select("Work/Bulk", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	moved, err := c.Move(imap.UIDSet{{Start: 1, Stop: 0}}, "Home/Bulk").Wait()
	if err != nil {
		t.Fatalf("UID MOVE 1:* Home/Bulk: %v", err)
	}
	took := time.Since(start)
	t.Logf("UID MOVE of %d messages across accounts: %v (%.0f messages/s)", n, took.Round(time.Millisecond), n/took.Seconds())

	if _, _, ids := proxyView(t, c, "Work/Bulk"); len(ids) != 0 {
		t.Errorf("Work/Bulk through the proxy: %d messages after the move", len(ids))
	}
	validity, flags, dstIDs := proxyView(t, c, "Home/Bulk")
	if len(dstIDs) != n {
		t.Errorf("Home/Bulk through the proxy: %d messages after the move, want %d", len(dstIDs), n)
	}
	msrc, _ := moved.SourceUIDs.(imap.UIDSet)
	mdst, _ := moved.DestUIDs.(imap.UIDSet)
	checkCopyUID(t, "UID MOVE", &imap.CopyData{UIDValidity: moved.UIDValidity, SourceUIDs: msrc, DestUIDs: mdst},
		validity, srcIDs, dstIDs, n)
	if left := directState(t, work, "Bulk"); len(left) != 0 {
		t.Errorf("work's Bulk still holds %d messages after the move", len(left))
	}
	homeHas := directState(t, home, "Bulk")
	if d := exactlyOnce(want, homeHas); d != "" {
		t.Errorf("home's Bulk after the move: %s", d)
	}
	for uid, f := range flags {
		if copies := homeHas[dstIDs[uid]]; len(copies) != 1 || copies[0].flags != f.flags {
			t.Errorf("%s: flags %q through the proxy, %v on home's Dovecot", dstIDs[uid], f.flags, copies)
			break
		}
	}

	// UID COPY of a third back to the other account: both hold them.
	var some imap.UIDSet
	var picked []string
	for uid, id := range dstIDs {
		if len(picked) < n/3 {
			some.AddNum(uid)
			picked = append(picked, id)
		}
	}
	if _, err := c.Select("Home/Bulk", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	copied, err := c.Copy(some, "Work/Copies").Wait()
	if err != nil {
		t.Fatalf("UID COPY to Work/Copies: %v", err)
	}
	_, _, copyIDs := proxyView(t, c, "Work/Copies")
	checkCopyUID(t, "UID COPY", copied, mustValidity(t, c, "Work/Copies"), dstIDs, copyIDs, len(picked))
	wantCopies := make(map[string]directMessage, len(picked))
	for _, id := range picked {
		wantCopies[id] = want[id]
	}
	if d := exactlyOnce(wantCopies, directState(t, work, "Copies")); d != "" {
		t.Errorf("work's Copies after the copy: %s", d)
	}
	if d := exactlyOnce(want, directState(t, home, "Bulk")); d != "" {
		t.Errorf("home's Bulk after the copy: %s", d)
	}
}

// mustValidity returns the UIDVALIDITY of a mailbox through the proxy.
func mustValidity(t *testing.T, c *imapclient.Client, mailbox string) uint32 {
	t.Helper()
	sd, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	return sd.UIDValidity
}

// countFiles counts the message files of a maildir (new and cur).
func countFiles(dir string) int {
	n := 0
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(dir, sub))
		n += len(entries)
	}
	return n
}
