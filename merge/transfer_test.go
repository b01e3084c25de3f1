package merge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"imapproxy/store"
	"imapproxy/upstream"
)

// transferCaps are the capabilities of a full-featured upstream.
var transferCaps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapMove: {}, imap.CapNamespace: {}}

// startTransferMem starts an upstream with the mailboxes INBOX and
// Archive, offering caps, its sessions passed through wrap (if not nil).
func startTransferMem(t *testing.T, caps imap.CapSet, wrap func(imapserver.Session) imapserver.Session) *memUpstream {
	t.Helper()
	m := &memUpstream{t: t}
	mem := imapmemserver.New()
	m.user = imapmemserver.NewUser(memUser, memPassword)
	for _, name := range []string{"INBOX", "Archive"} {
		if err := m.user.Create(name, nil); err != nil {
			t.Fatal(err)
		}
	}
	mem.AddUser(m.user)
	m.serve(mem, "127.0.0.1:0", caps, func(s imapserver.Session) imapserver.Session {
		s = wholeAppends{s}
		if wrap != nil {
			s = wrap(s)
		}
		return s
	}, nil)
	return m
}

// wholeAppends makes an imapmemserver session refuse an APPEND whose
// literal the connection's end cut short. imapserver reads a client's
// hang-up in the middle of a literal as the literal's end, and
// imapmemserver then stores the truncated message; real servers (Dovecot)
// drop it, and the transfer tests cut connections mid-literal on purpose.
type wholeAppends struct{ imapserver.Session }

// Append implements imapserver.Session.
func (s wholeAppends) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != r.Size() {
		return nil, fmt.Errorf("literal of %d bytes cut after %d", r.Size(), len(b))
	}
	return s.Session.Append(mailbox, sizedReader{bytes.NewReader(b)}, options)
}

// Namespace implements imapserver.SessionNamespace.
func (s wholeAppends) Namespace() (*imap.NamespaceData, error) {
	return s.Session.(imapserver.SessionNamespace).Namespace()
}

// Move implements imapserver.SessionMove.
func (s wholeAppends) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	return s.Session.(imapserver.SessionMove).Move(w, numSet, dest)
}

// sizedReader is an imap.LiteralReader over bytes.
type sizedReader struct{ *bytes.Reader }

// Size implements imap.LiteralReader.
func (r sizedReader) Size() int64 { return r.Reader.Size() }

// testMsg is a generated message.
type testMsg struct {
	body  []byte
	flags []imap.Flag
	date  time.Time
}

// genMessages makes n messages of sizes up to maxSize with random flags
// and keywords; every seventh has no Message-ID.
func genMessages(rng *rand.Rand, n, maxSize int) []testMsg {
	out := make([]testMsg, n)
	base := time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range out {
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: a%d@example.org\r\nTo: b@example.org\r\nSubject: message %d\r\n", i, i)
		if i%7 != 3 {
			fmt.Fprintf(&b, "Message-ID: <m%d.%d@example.org>\r\n", i, rng.Int64())
		}
		b.WriteString("\r\n")
		size := 100 + rng.IntN(maxSize)
		for b.Len() < size {
			fmt.Fprintf(&b, "line %d of message %d %x\r\n", b.Len(), i, rng.Uint64())
		}
		var flags []imap.Flag
		for _, f := range []imap.Flag{imap.FlagSeen, imap.FlagFlagged, imap.FlagAnswered, "$Label1", "Work"} {
			if rng.IntN(3) == 0 {
				flags = append(flags, f)
			}
		}
		out[i] = testMsg{body: b.Bytes(), flags: flags, date: base.Add(time.Duration(rng.IntN(1e6)) * time.Second)}
	}
	return out
}

// fill appends msgs to mailbox directly on the server.
func fill(t *testing.T, m *memUpstream, mailbox string, msgs []testMsg) {
	t.Helper()
	for _, msg := range msgs {
		if _, err := m.user.Append(mailbox, bytes.NewReader(msg.body), &imap.AppendOptions{Flags: msg.flags, Time: msg.date}); err != nil {
			t.Fatal(err)
		}
	}
}

// msgKey is what must survive a transfer: body, flags and date.
func msgKey(body []byte, flags []imap.Flag, date time.Time) string {
	var fs []string
	for _, f := range flags {
		if !strings.EqualFold(string(f), `\Recent`) {
			fs = append(fs, strings.ToLower(string(f)))
		}
	}
	slices.Sort(fs)
	h := sha256.Sum256(body)
	return hex.EncodeToString(h[:8]) + " " + strings.Join(fs, ",") + " " + date.UTC().Format(time.RFC3339)
}

// wantKeys counts msgs by msgKey.
func wantKeys(msgs []testMsg) map[string]int {
	out := make(map[string]int)
	for _, m := range msgs {
		out[msgKey(m.body, m.flags, m.date)]++
	}
	return out
}

// contents counts the messages of mailbox on an upstream by msgKey.
func contents(t *testing.T, c *upstream.Client, mailbox string) map[string]int {
	t.Helper()
	out := make(map[string]int)
	err := c.Do(context.Background(), func(ic *imapclient.Client) error {
		sd, err := ic.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil || sd.NumMessages == 0 {
			return err
		}
		bufs, err := ic.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
			Flags: true, InternalDate: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}},
		}).Collect()
		for _, b := range bufs {
			out[msgKey(b.FindBodySection(&imap.FetchItemBodySection{Peek: true}), b.Flags, b.InternalDate)]++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sumKeys adds counts.
func sumKeys(ms ...map[string]int) map[string]int {
	out := make(map[string]int)
	for _, m := range ms {
		for k, n := range m {
			out[k] += n
		}
	}
	return out
}

// diffKeys describes how got differs from want, "" when it does not.
func diffKeys(got, want map[string]int) string {
	var b strings.Builder
	for k, n := range want {
		if got[k] != n {
			fmt.Fprintf(&b, "%s: %d, want %d; ", k, got[k], n)
		}
	}
	for k, n := range got {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "%s: %d, want none; ", k, n)
		}
	}
	return b.String()
}

// transferEnv is a store and two upstream accounts, "src" and "dst".
type transferEnv struct {
	t        *testing.T
	src, dst *memUpstream
	path     string
	st       store.Store
}

func newTransferEnv(t *testing.T, srcCaps, dstCaps imap.CapSet) *transferEnv {
	t.Helper()
	e := &transferEnv{t: t, src: startTransferMem(t, srcCaps, nil), dst: startTransferMem(t, dstCaps, nil)}
	e.path = filepath.Join(t.TempDir(), "state.db")
	e.st = e.openStore()
	return e
}

// openStore opens a store handle on the env's file, closed at the end.
func (e *transferEnv) openStore() store.Store {
	e.t.Helper()
	st, err := store.OpenSQLite(context.Background(), e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { st.Close() })
	return st
}

// engine returns a Transfers over new pools (closed at the end) and
// st.
func (e *transferEnv) engine(st store.Store) *Transfers {
	e.t.Helper()
	pools := make(map[string]*upstream.AccountPool)
	for name, m := range map[string]*memUpstream{"src": e.src, "dst": e.dst} {
		o := m.account()
		o.Name = name
		p := upstream.NewAccountPool(o, 2)
		e.t.Cleanup(p.Close)
		pools[name] = p
	}
	return &Transfers{Store: st, User: "alice", Pools: pools, Log: slog.New(slog.NewTextHandler(tLogWriter{e.t}, nil))}
}

// uids returns the UIDs of mailbox on m.
func uidsOf(t *testing.T, m *memUpstream, mailbox string) []imap.UID {
	t.Helper()
	var out []imap.UID
	for u := range upstreamFlags(m, mailbox) {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// unfinished returns the user's unfinished journal rows.
func unfinished(t *testing.T, st store.Store) []store.Transfer {
	t.Helper()
	rows, err := st.ListTransfers(context.Background(), "alice", true)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestTransferMove1000(t *testing.T) {
	e := newTransferEnv(t, transferCaps, transferCaps)
	rng := rand.New(rand.NewPCG(1, 2))
	msgs := genMessages(rng, 1000, 8<<10)
	fill(t, e.src, "INBOX", msgs)
	eng := e.engine(e.st)
	admin := e.dst.dial()
	sadmin := e.src.dial()
	if d := diffKeys(contents(t, sadmin, "INBOX"), wantKeys(msgs)); d != "" {
		t.Fatalf("source before: %s", d)
	}

	uids := uidsOf(t, e.src, "INBOX")
	// Metadata in batches of 300, 300, 300 and 100 messages, each moved
	// in runs of at most 64: 5+5+5+2 body FETCHes, and no SEARCH (the
	// sequence numbers come from the metadata, less what was deleted).
	eng.metaBatch = 300
	runFetches := regexp.MustCompile(`(?m)^\S+ FETCH \S+ \(UID BODY\.PEEK\[\]\)\r$`)
	searches := regexp.MustCompile(`(?m)^\S+ (UID )?SEARCH `)
	count := func(re *regexp.Regexp) int {
		n := 0
		for _, s := range e.src.sent() {
			n += len(re.FindAllStringIndex(s, -1))
		}
		return n
	}
	fetches0, searches0 := count(runFetches), count(searches)
	start := time.Now()
	res, err := eng.Run(t.Context(), TransferRequest{Kind: store.TransferMove, SrcAccount: "src", SrcMailbox: "INBOX",
		UIDs: uids, DstAccount: "dst", DstMailbox: "Archive"})
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if f, s := count(runFetches)-fetches0, count(searches)-searches0; f != 17 || s != 0 {
		t.Errorf("the source got %d body FETCHes and %d SEARCHes; want 17 and 0", f, s)
	}
	t.Logf("MOVE of %d messages across accounts: %v (%.0f messages/s)", len(uids), elapsed, float64(len(uids))/elapsed.Seconds())
	if len(res.Done) != 1000 || len(res.Missing) != 0 || res.DstUIDValidity == 0 {
		t.Fatalf("result: %d done, %d missing, UIDVALIDITY %d", len(res.Done), len(res.Missing), res.DstUIDValidity)
	}
	dstUIDs := uidsOf(t, e.dst, "Archive")
	for i, d := range res.Done {
		if d.SrcUID != uids[i] || d.DstUID != dstUIDs[i] {
			t.Fatalf("done[%d] = %+v, want %d -> %d", i, d, uids[i], dstUIDs[i])
		}
	}
	if n := len(uidsOf(t, e.src, "INBOX")); n != 0 {
		t.Errorf("source has %d messages after MOVE", n)
	}
	if d := diffKeys(contents(t, admin, "Archive"), wantKeys(msgs)); d != "" {
		t.Errorf("target after MOVE: %s", d)
	}
	if rows := unfinished(t, e.st); len(rows) != 0 {
		t.Errorf("unfinished rows: %+v", rows)
	}
}

// TestTransferNoUIDPlus: a target without UIDPLUS gives no APPENDUID, so
// the copies are found by search (Message-ID and size, or size and
// INTERNALDATE); a source without it cannot be moved from.
func TestTransferNoUIDPlus(t *testing.T) {
	plain := imap.CapSet{imap.CapIMAP4rev1: {}}
	e := newTransferEnv(t, plain, plain)
	rng := rand.New(rand.NewPCG(3, 4))
	msgs := genMessages(rng, 30, 2<<10)
	fill(t, e.src, "INBOX", msgs)
	// A message already in the target with the same Message-ID and size
	// must not be taken for the copy.
	fill(t, e.dst, "Archive", msgs[:1])
	eng := e.engine(e.st)
	uids := uidsOf(t, e.src, "INBOX")
	res, err := eng.Run(t.Context(), TransferRequest{Kind: store.TransferCopy, SrcAccount: "src", SrcMailbox: "INBOX",
		UIDs: uids, DstAccount: "dst", DstMailbox: "Archive"})
	if err != nil {
		t.Fatal(err)
	}
	dstUIDs := uidsOf(t, e.dst, "Archive")
	if len(res.Done) != 30 || len(dstUIDs) != 31 {
		t.Fatalf("%d done, target has %d", len(res.Done), len(dstUIDs))
	}
	for i, d := range res.Done {
		if d.DstUID != dstUIDs[i+1] {
			t.Errorf("done[%d] = %+v, want target UID %d", i, d, dstUIDs[i+1])
		}
	}
	if d := diffKeys(contents(t, e.dst.dial(), "Archive"), sumKeys(wantKeys(msgs), wantKeys(msgs[:1]))); d != "" {
		t.Errorf("target after COPY: %s", d)
	}
	_, err = eng.Run(t.Context(), TransferRequest{Kind: store.TransferMove, SrcAccount: "src", SrcMailbox: "INBOX",
		UIDs: uids[:1], DstAccount: "dst", DstMailbox: "Archive"})
	wantCode(t, "MOVE from an upstream without UIDPLUS", err, imap.ResponseCodeCannot)
	if n := len(uidsOf(t, e.dst, "Archive")); n != 31 {
		t.Errorf("refused MOVE changed the target: %d messages", n)
	}
}

// TestTransferSourceExpungedMeanwhile: a message another client expunges
// from the source in the middle of a MOVE (after its metadata was read)
// is reported missing; the others move, their sequence numbers having
// shifted under the engine.
func TestTransferSourceExpungedMeanwhile(t *testing.T) {
	e := newTransferEnv(t, transferCaps, transferCaps)
	rng := rand.New(rand.NewPCG(5, 6))
	msgs := genMessages(rng, 130, 1<<10)
	fill(t, e.src, "INBOX", msgs)
	uids := uidsOf(t, e.src, "INBOX")
	gone := uids[99] // in the second run of 64
	eng := e.engine(e.st)
	once := false
	eng.fault = func(step string) error {
		if step == "deleted" && !once {
			once = true
			e.src.expunge("INBOX", gone)
		}
		return nil
	}
	res, err := eng.Run(t.Context(), TransferRequest{Kind: store.TransferMove, SrcAccount: "src", SrcMailbox: "INBOX",
		UIDs: uids, DstAccount: "dst", DstMailbox: "Archive"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Done) != 129 || !slices.Equal(res.Missing, []imap.UID{gone}) {
		t.Errorf("%d done, missing %v; want 129 and [%d]", len(res.Done), res.Missing, gone)
	}
	want := wantKeys(append(slices.Clone(msgs[:99]), msgs[100:]...))
	if d := diffKeys(contents(t, e.dst.dial(), "Archive"), want); d != "" {
		t.Errorf("target: %s", d)
	}
	if n := len(uidsOf(t, e.src, "INBOX")); n != 0 {
		t.Errorf("source has %d messages after the MOVE", n)
	}
	if rows := unfinished(t, e.st); len(rows) != 0 {
		t.Errorf("unfinished rows: %+v", rows)
	}
}
