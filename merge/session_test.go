package merge

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"imapproxy/internal/sample"
	"imapproxy/store"
)

// startSampleMem starts an upstream holding the sample mail of account
// name, offering UIDPLUS, MOVE and NAMESPACE.
func startSampleMem(t *testing.T, name string) (*memUpstream, []sample.Message) {
	t.Helper()
	return startSampleMemWrapped(t, name, nil)
}

// startSampleMemWrapped is startSampleMem with the upstream's sessions
// passed through wrap (if not nil).
func startSampleMemWrapped(t *testing.T, name string, wrap func(imapserver.Session) imapserver.Session) (*memUpstream, []sample.Message) {
	t.Helper()
	m := &memUpstream{t: t}
	mem := imapmemserver.New()
	m.user = imapmemserver.NewUser(memUser, memPassword)
	msgs := sample.Account(name, sample.DefaultNow)
	if err := sample.Fill(m.user, msgs); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(m.user)
	m.serve(mem, "127.0.0.1:0", imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapMove: {}, imap.CapNamespace: {}}, wrap, nil)
	return m, msgs
}

// sessEnv is two sample upstreams ("work" at Work/, "home" at Home/,
// unified INBOX, default account work) and a store.
type sessEnv struct {
	t                  *testing.T
	work, home         *memUpstream
	workMsgs, homeMsgs []sample.Message
	st                 store.Store
	spec               UserSpec
	// caps are the front server's capabilities (nil: IMAP4rev1,
	// NAMESPACE, MOVE, UIDPLUS).
	caps imap.CapSet
	// addr is the address of the front server serve started last.
	addr string
}

func newSessEnv(t *testing.T) *sessEnv {
	t.Helper()
	return newSessEnvWrapped(t, nil)
}

// newSessEnvWrapped is newSessEnv with the work upstream's sessions
// passed through wrapWork (if not nil).
func newSessEnvWrapped(t *testing.T, wrapWork func(imapserver.Session) imapserver.Session) *sessEnv {
	t.Helper()
	e := &sessEnv{t: t}
	e.work, e.workMsgs = startSampleMemWrapped(t, "work", wrapWork)
	e.home, e.homeMsgs = startSampleMem(t, "home")
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	work, home := e.work.account(), e.home.account()
	work.Name, home.Name = "work", "home"
	e.spec = UserSpec{
		User: "alice",
		Accounts: []AccountSpec{
			{Name: "work", Prefix: "Work", Options: work},
			{Name: "home", Prefix: "Home", Options: home},
		},
		UnifiedInbox:   true,
		DefaultAccount: "work",
	}
	return e
}

// serve starts a Manager and a front server for it, and returns a
// client connected to it (PREAUTH).
func (e *sessEnv) serve(h *imapclient.UnilateralDataHandler) (*Manager, *imapclient.Client) {
	t := e.t
	t.Helper()
	m := NewManager(ManagerOptions{
		Store:         e.st,
		Logger:        slog.New(slog.NewTextHandler(tLogWriter{t}, nil)),
		WatchInterval: time.Second,
		Linger:        time.Minute,
	})
	t.Cleanup(m.Close)
	return m, e.serveManager(m, h)
}

// serveManager starts a front server for the Manager m and returns a
// client connected to it (PREAUTH).
func (e *sessEnv) serveManager(m *Manager, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t := e.t
	t.Helper()
	logger := &serverLog{t: t}
	caps := e.caps
	if caps == nil {
		caps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapNamespace: {}, imap.CapMove: {}, imap.CapUIDPlus: {}}
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			s, err := m.NewSession(context.Background(), e.spec)
			if ms, ok := s.(*Session); ok {
				// As the proxy does: a response cut short ends the connection.
				ms.OnBroken(func() { c.NetConn().Close() })
			}
			return s, &imapserver.GreetingData{PreAuth: true}, err
		},
		Caps:         caps,
		Logger:       logger,
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-served
		logger.mu.Lock()
		logger.done = true
		logger.mu.Unlock()
	})
	c, err := imapclient.DialInsecure(ln.Addr().String(), &imapclient.Options{UnilateralDataHandler: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.WaitGreeting(); err != nil {
		t.Fatal(err)
	}
	return c
}

// inbox returns the sample messages of an account's INBOX.
func inbox(msgs []sample.Message) []sample.Message {
	var out []sample.Message
	for _, m := range msgs {
		if m.Mailbox == "" || strings.EqualFold(m.Mailbox, "INBOX") {
			out = append(out, m)
		}
	}
	return out
}

// upstreamFlags returns the flags of the upstream messages of mailbox,
// by UID.
func upstreamFlags(m *memUpstream, mailbox string) map[imap.UID][]imap.Flag {
	m.t.Helper()
	out := make(map[imap.UID][]imap.Flag)
	m.admin(mailbox, func(ic *imapclient.Client) error {
		bufs, err := ic.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
		for _, b := range bufs {
			out[b.UID] = b.Flags
		}
		return err
	})
	return out
}

func wantCode(t *testing.T, what string, err error, code imap.ResponseCode) {
	t.Helper()
	ie, ok := errors.AsType[*imap.Error](err)
	if !ok || ie.Type != imap.StatusResponseTypeNo || ie.Code != code {
		t.Errorf("%s: %v, want NO [%s]", what, err, code)
	}
}

func TestSessionListSelectFetch(t *testing.T) {
	e := newSessEnv(t)
	_, c := e.serve(nil)

	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	names := make(map[string][]imap.MailboxAttr)
	for _, l := range list {
		names[l.Mailbox] = l.Attrs
	}
	for _, n := range []string{"INBOX", "Work", "Work/INBOX", "Work/Sent", "Work/Projects/Apollo", "Home", "Home/INBOX", "Home/Drafts"} {
		if _, ok := names[n]; !ok {
			t.Errorf("LIST lacks %s: %v", n, names)
		}
	}
	if !slices.Contains(names["Work/Projects"], imap.MailboxAttrHasChildren) || !slices.Contains(names["Work/Sent"], imap.MailboxAttrHasNoChildren) {
		t.Errorf("children attributes: %v", names)
	}
	if l, err := c.List("", "Home/%", nil).Collect(); err != nil || len(l) == 0 || slices.ContainsFunc(l, func(d *imap.ListData) bool { return !strings.HasPrefix(d.Mailbox, "Home/") }) {
		t.Errorf("LIST Home/%%: %v %v", l, err)
	}
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' {
		t.Errorf("NAMESPACE %+v %v", ns, err)
	}

	want := append(inbox(e.workMsgs), inbox(e.homeMsgs)...)
	if len(inbox(e.workMsgs)) < 2 || len(inbox(e.homeMsgs)) < 2 {
		t.Fatalf("sample INBOXes too small: %d, %d", len(inbox(e.workMsgs)), len(inbox(e.homeMsgs)))
	}
	sd, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if int(sd.NumMessages) != len(want) {
		t.Fatalf("unified INBOX has %d messages, want %d", sd.NumMessages, len(want))
	}
	st, err := c.Status("Home/INBOX", &imap.StatusOptions{NumMessages: true, NumUnseen: true, UIDNext: true, UIDValidity: true}).Wait()
	if err != nil || *st.NumMessages != uint32(len(inbox(e.homeMsgs))) || st.UIDValidity == 0 || st.UIDNext == 0 {
		t.Errorf("STATUS %+v %v", st, err)
	}

	bodySec := &imap.FetchItemBodySection{Peek: true}
	bufs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, Flags: true, Envelope: true, RFC822Size: true, InternalDate: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*imap.FetchItemBodySection{bodySec},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(bufs) != len(want) {
		t.Fatalf("FETCH returned %d messages", len(bufs))
	}
	seen := make(map[int]bool)
	var lastUID imap.UID
	for i, b := range bufs {
		if b.SeqNum != uint32(i+1) || b.UID <= lastUID {
			t.Errorf("message %d: seq %d uid %d", i, b.SeqNum, b.UID)
		}
		lastUID = b.UID
		body := b.FindBodySection(bodySec)
		j := slices.IndexFunc(want, func(m sample.Message) bool { return bytes.Equal(m.Raw, body) })
		if j < 0 || seen[j] {
			t.Errorf("message %d: body not one of the upstreams' (%d bytes)", i, len(body))
			continue
		}
		seen[j] = true
		if b.Envelope == nil || !strings.Contains(string(body), b.Envelope.MessageID) || b.RFC822Size != int64(len(body)) || b.BodyStructure == nil {
			t.Errorf("message %d: envelope %+v size %d", i, b.Envelope, b.RFC822Size)
		}
		if !sameFlags(b.Flags, want[j].Flags) {
			t.Errorf("message %d: flags %v, want %v", i, b.Flags, want[j].Flags)
		}
	}

	// UID FETCH names virtual UIDs.
	second := bufs[1].UID
	ub, err := c.Fetch(imap.UIDSetNum(second), &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil || len(ub) != 1 || ub[0].SeqNum != 2 || ub[0].UID != second {
		t.Errorf("UID FETCH %d: %+v %v", second, ub, err)
	}

	// SEARCH maps back.
	var unseen []uint32
	for i, b := range bufs {
		if !slices.Contains(b.Flags, imap.FlagSeen) {
			unseen = append(unseen, uint32(i+1))
		}
	}
	if len(unseen) == 0 || len(unseen) == len(bufs) {
		t.Errorf("sample INBOXes: %d of %d unseen", len(unseen), len(bufs))
	}
	res, err := c.Search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	if err != nil || !slices.Equal(res.AllSeqNums(), unseen) {
		t.Errorf("SEARCH UNSEEN = %v (%v), want %v", res.AllSeqNums(), err, unseen)
	}
	last := bufs[len(bufs)-1]
	res, err = c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: last.Envelope.Subject}}}, nil).Wait()
	if err != nil || !slices.Contains(res.AllUIDs(), last.UID) {
		t.Errorf("UID SEARCH SUBJECT %q = %v (%v), want %d", last.Envelope.Subject, res.AllUIDs(), err, last.UID)
	}
	res, err = c.Search(&imap.SearchCriteria{SeqNum: []imap.SeqSet{imap.SeqSetNum(2, 3)}, Not: []imap.SearchCriteria{{UID: []imap.UIDSet{imap.UIDSetNum(bufs[2].UID)}}}}, nil).Wait()
	if err != nil || !slices.Equal(res.AllSeqNums(), []uint32{2}) {
		t.Errorf("SEARCH 2:3 NOT UID = %v (%v)", res.AllSeqNums(), err)
	}
}

func TestSessionStoreExamine(t *testing.T) {
	e := newSessEnv(t)
	_, c := e.serve(nil)

	// EXAMINE: no STORE, and BODY[] does not set \Seen.
	if _, err := c.Select("Work/INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	before := upstreamFlags(e.work, "INBOX")
	var unseenUID imap.UID
	for uid, fs := range before {
		if !slices.Contains(fs, imap.FlagSeen) && (unseenUID == 0 || uid < unseenUID) {
			unseenUID = uid
		}
	}
	if unseenUID == 0 {
		t.Fatal("work INBOX has no unseen message")
	}
	err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close()
	wantCode(t, "STORE on EXAMINE", err, "READ-ONLY")
	// Work/INBOX vuids follow the upstream's UIDs: sequence numbers match.
	seq := uint32(0)
	for uid := range before {
		if uid <= unseenUID {
			seq++
		}
	}
	body := &imap.FetchItemBodySection{}
	bufs, err := c.Fetch(imap.SeqSetNum(seq), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{body}}).Collect()
	if err != nil || len(bufs) != 1 || len(bufs[0].FindBodySection(body)) == 0 {
		t.Fatalf("FETCH BODY[]: %+v %v", bufs, err)
	}
	if fs := upstreamFlags(e.work, "INBOX")[unseenUID]; slices.Contains(fs, imap.FlagSeen) {
		t.Errorf("FETCH BODY[] on EXAMINE set \\Seen upstream: %v", fs)
	}

	// SELECT: STORE reaches the upstream, BODY[] sets \Seen.
	if _, err := c.Select("Work/INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sb, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect()
	if err != nil || len(sb) != 1 || !slices.Contains(sb[0].Flags, imap.FlagFlagged) {
		t.Errorf("STORE: %+v %v", sb, err)
	}
	after := upstreamFlags(e.work, "INBOX")
	var first imap.UID
	for uid := range after {
		if first == 0 || uid < first {
			first = uid
		}
	}
	if !slices.Contains(after[first], imap.FlagFlagged) {
		t.Errorf("upstream flags after STORE: %v", after[first])
	}
	if _, err := c.Fetch(imap.SeqSetNum(seq), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{body}}).Collect(); err != nil {
		t.Fatal(err)
	}
	if fs := upstreamFlags(e.work, "INBOX")[unseenUID]; !slices.Contains(fs, imap.FlagSeen) {
		t.Errorf("FETCH BODY[] did not set \\Seen upstream: %v", fs)
	}

	// EXPUNGE of \Deleted.
	n := len(after)
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	seqs, err := c.Expunge().Collect()
	if err != nil || !slices.Equal(seqs, []uint32{1}) {
		t.Errorf("EXPUNGE: %v %v", seqs, err)
	}
	if got := len(upstreamFlags(e.work, "INBOX")); got != n-1 {
		t.Errorf("upstream has %d messages after EXPUNGE, want %d", got, n-1)
	}
}

func TestSessionAppendCreateRename(t *testing.T) {
	e := newSessEnv(t)
	_, c := e.serve(nil)
	appendTo := func(name string) *imap.AppendData {
		t.Helper()
		const msg = "From: a@example.com\r\nSubject: appended\r\n\r\nhello\r\n"
		cmd := c.Append(name, int64(len(msg)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
		cmd.Write([]byte(msg))
		cmd.Close()
		d, err := cmd.Wait()
		if err != nil {
			t.Fatalf("APPEND %s: %v", name, err)
		}
		return d
	}
	for _, name := range []string{"Work/INBOX", "INBOX"} {
		sd, err := c.Select(name, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		nWork := len(upstreamFlags(e.work, "INBOX"))
		d := appendTo(name)
		if d == nil || d.UIDValidity != sd.UIDValidity || d.UID < sd.UIDNext {
			t.Errorf("APPEND %s: %+v, mailbox UIDVALIDITY %d UIDNEXT %d", name, d, sd.UIDValidity, sd.UIDNext)
		}
		if got := len(upstreamFlags(e.work, "INBOX")); got != nWork+1 {
			t.Errorf("APPEND %s: work INBOX has %d messages, want %d", name, got, nWork+1)
		}
		// The session sees it, with that UID.
		deadline := time.Now().Add(5 * time.Second)
		for {
			if err := c.Noop().Wait(); err != nil {
				t.Fatal(err)
			}
			bufs, err := c.Fetch(imap.UIDSetNum(d.UID), &imap.FetchOptions{UID: true, Flags: true}).Collect()
			if err != nil {
				t.Fatal(err)
			}
			if len(bufs) == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("appended UID %d not in %s", d.UID, name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}

	if err := c.Create("Work/New", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.work.user.Status("New", &imap.StatusOptions{NumMessages: true}); err != nil {
		t.Errorf("CREATE Work/New did not reach the upstream: %v", err)
	}
	wantCode(t, "CREATE Work", c.Create("Work", nil).Wait(), imap.ResponseCodeCannot)
	wantCode(t, "RENAME across accounts", c.Rename("Work/New", "Home/New", nil).Wait(), imap.ResponseCodeCannot)
	if err := c.Rename("Work/New", "Work/Newer", nil).Wait(); err != nil {
		t.Errorf("RENAME: %v", err)
	}
	if _, err := e.work.user.Status("Newer", &imap.StatusOptions{NumMessages: true}); err != nil {
		t.Errorf("RENAME did not reach the upstream: %v", err)
	}
	if err := c.Delete("Work/Newer").Wait(); err != nil {
		t.Errorf("DELETE: %v", err)
	}
	_, err := c.Select("Nope/X", nil).Wait()
	wantCode(t, "SELECT outside every account", err, imap.ResponseCodeNonExistent)
}

func TestSessionIdleAndRestart(t *testing.T) {
	e := newSessEnv(t)
	exists := make(chan uint32, 16)
	expunged := make(chan uint32, 16)
	_, c := e.serve(&imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
		Expunge: func(seq uint32) { expunged <- seq },
	})
	sd, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	uid := e.home.put("INBOX")
	select {
	case n := <-exists:
		if n != sd.NumMessages+1 {
			t.Errorf("EXISTS %d, want %d", n, sd.NumMessages+1)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no EXISTS within 5s while idling")
	}
	e.home.expunge("INBOX", uid)
	select {
	case seq := <-expunged:
		if seq != sd.NumMessages+1 {
			t.Errorf("EXPUNGE %d, want %d", seq, sd.NumMessages+1)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no EXPUNGE within 5s while idling")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}

	// UIDs stay across a new Manager on the same store.
	uids := func(c *imapclient.Client) (uint32, []imap.UID) {
		t.Helper()
		sd, err := c.Select("Work/INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		bufs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var out []imap.UID
		for _, b := range bufs {
			out = append(out, b.UID)
		}
		return sd.UIDValidity, out
	}
	v1, u1 := uids(c)
	m2, c2 := e.serve(nil)
	_ = m2
	v2, u2 := uids(c2)
	if v1 != v2 || !slices.Equal(u1, u2) || len(u1) == 0 {
		t.Errorf("before: %d %v; after: %d %v", v1, u1, v2, u2)
	}
}

func TestSessionCopyMove(t *testing.T) {
	e := newSessEnv(t)
	_, c := e.serve(nil)
	if _, err := c.Select("Work/INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	n := len(upstreamFlags(e.work, "INBOX"))
	archive := len(upstreamFlags(e.work, "Archive"))
	cd, err := c.Copy(imap.SeqSetNum(1), "Work/Archive").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(upstreamFlags(e.work, "Archive")); got != archive+1 {
		t.Errorf("COPY: Archive has %d messages, want %d", got, archive+1)
	}
	st, err := c.Status("Work/Archive", &imap.StatusOptions{UIDValidity: true, UIDNext: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if dst, _ := cd.DestUIDs.Nums(); cd.UIDValidity != st.UIDValidity || len(dst) != 1 || dst[0] >= st.UIDNext {
		t.Errorf("COPYUID %+v, Archive %+v", cd, st)
	}
	if _, err = c.Copy(imap.SeqSetNum(1), "Home/INBOX").Wait(); err != nil {
		t.Errorf("COPY across accounts: %v", err) // more in session_transfer_test.go
	}

	md, err := c.Move(imap.SeqSetNum(1), "Work/Trash").Wait()
	if err != nil || md == nil {
		t.Fatalf("MOVE: %+v %v", md, err)
	}
	if got := len(upstreamFlags(e.work, "INBOX")); got != n-1 {
		t.Errorf("MOVE: INBOX has %d messages, want %d", got, n-1)
	}
	sd, err := c.Select("Work/INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil || int(sd.NumMessages) != n-1 {
		t.Errorf("after MOVE: %+v %v", sd, err)
	}
	_, err = c.Move(imap.SeqSetNum(1), "Work/Trash").Wait()
	wantCode(t, "MOVE on EXAMINE", err, "READ-ONLY")
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Errorf("CLOSE of an EXAMINEd mailbox: %v", err)
	}
	if l, err := c.List("", "Work/*", &imap.ListOptions{SelectSubscribed: true}).Collect(); err != nil || len(l) == 0 || !slices.Contains(l[0].Attrs, imap.MailboxAttrSubscribed) {
		t.Errorf("LIST (SUBSCRIBED): %+v %v", l, err)
	}
}
