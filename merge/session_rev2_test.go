package merge

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
)

// rev2Caps are the capabilities the proxy serves merged sessions with
// (proxy's mergeCaps): IMAP4rev2 and what it needs of the backend.
var rev2Caps = imap.CapSet{
	imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}, imap.CapNamespace: {}, imap.CapMove: {},
	imap.CapUIDPlus: {}, imap.CapChildren: {}, imap.CapLiteralPlus: {}, imap.CapESearch: {},
	imap.CapSearchRes: {}, imap.CapListExtended: {}, imap.CapListStatus: {}, imap.CapStatusSize: {},
}

// upstreamSizes sums the RFC822.SIZE of an upstream mailbox's messages.
func upstreamSizes(m *memUpstream, mailbox string) (n int, size int64) {
	m.t.Helper()
	m.admin(mailbox, func(ic *imapclient.Client) error {
		bufs, err := ic.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{RFC822Size: true}).Collect()
		for _, b := range bufs {
			n++
			size += b.RFC822Size
		}
		return err
	})
	return n, size
}

func TestSessionStatusSizeListStatus(t *testing.T) {
	e := newSessEnv(t)
	e.caps = rev2Caps
	_, c := e.serve(nil)
	wn, ws := upstreamSizes(e.work, "INBOX")
	hn, hs := upstreamSizes(e.home, "INBOX")
	if wn == 0 || hn == 0 || ws == 0 {
		t.Fatalf("empty upstream INBOXes: %d %d", wn, hn)
	}
	sd, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true, Size: true, NumDeleted: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sd.Size == nil || *sd.Size != ws+hs || sd.NumMessages == nil || *sd.NumMessages != uint32(wn+hn) || sd.NumDeleted == nil {
		t.Errorf("STATUS INBOX %+v, want SIZE %d MESSAGES %d", sd, ws+hs, wn+hn)
	}

	list, err := c.List("", "*", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true, UIDNext: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, l := range list {
		noSelect := slices.Contains(l.Attrs, imap.MailboxAttrNoSelect)
		switch {
		case noSelect && l.Status != nil:
			t.Errorf("STATUS for \\Noselect %s", l.Mailbox)
		case !noSelect && (l.Status == nil || l.Status.NumMessages == nil || l.Status.UIDNext == 0):
			t.Errorf("LIST RETURN (STATUS) %s: %+v", l.Mailbox, l.Status)
		case l.Mailbox == "INBOX":
			seen++
			if *l.Status.NumMessages != uint32(wn+hn) {
				t.Errorf("INBOX MESSAGES %d, want %d", *l.Status.NumMessages, wn+hn)
			}
		}
	}
	if seen != 1 {
		t.Errorf("LIST lacks INBOX with STATUS: %v", list)
	}

	subs, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != len(list) {
		t.Errorf("LIST (SUBSCRIBED) listed %d, LIST %d", len(subs), len(list))
	}
	for _, l := range subs {
		if !slices.Contains(l.Attrs, imap.MailboxAttrSubscribed) {
			t.Errorf("LIST (SUBSCRIBED) %s without \\Subscribed: %v", l.Mailbox, l.Attrs)
		}
	}
}

func TestSessionESearchSave(t *testing.T) {
	e := newSessEnv(t)
	e.caps = rev2Caps
	_, c := e.serve(nil)
	if !c.Caps().Has(imap.CapESearch) || !c.Caps().Has(imap.CapSearchRes) {
		t.Fatalf("caps %v", c.Caps())
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	n := sel.NumMessages
	bufs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil || len(bufs) != int(n) || n < 3 {
		t.Fatalf("FETCH: %d of %d, %v", len(bufs), n, err)
	}
	var seenUIDs []imap.UID
	for _, b := range bufs {
		if slices.Contains(b.Flags, imap.FlagSeen) {
			seenUIDs = append(seenUIDs, b.UID)
		}
	}

	all := &imap.SearchCriteria{}
	sd, err := c.UIDSearch(all, &imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sd.Min != uint32(bufs[0].UID) || sd.Max != uint32(bufs[n-1].UID) || sd.Count != n {
		t.Errorf("UID ESEARCH MIN %d MAX %d COUNT %d, want %d %d %d", sd.Min, sd.Max, sd.Count, bufs[0].UID, bufs[n-1].UID, n)
	}
	sd, err = c.Search(all, &imap.SearchOptions{ReturnAll: true, ReturnCount: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := sd.AllSeqNums(); len(got) != int(n) || got[0] != 1 || got[n-1] != n || sd.Count != n {
		t.Errorf("ESEARCH ALL %v COUNT %d, want 1:%d", got, sd.Count, n)
	}

	// imapclient does not send RETURN (SAVE): speak IMAP directly.
	gotUIDs := rawSaveFetch(t, e.addr, "SEEN")
	if len(seenUIDs) == 0 || !slices.Equal(gotUIDs, seenUIDs) {
		t.Errorf("UID FETCH $ after UID SEARCH RETURN (SAVE) SEEN: %v, want %v", gotUIDs, seenUIDs)
	}
}

// rawSaveFetch connects to addr, selects INBOX, runs UID SEARCH RETURN
// (SAVE) with criteria and UID FETCH $ (FLAGS), and returns the UIDs
// fetched, ascending.
func rawSaveFetch(t *testing.T, addr, criteria string) []imap.UID {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	cmd := func(tag, line string) []string {
		t.Helper()
		if _, err := fmt.Fprintf(conn, "%s %s\r\n", tag, line); err != nil {
			t.Fatal(err)
		}
		var out []string
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			if strings.HasPrefix(l, tag+" ") {
				if !strings.HasPrefix(l, tag+" OK") {
					t.Fatalf("%s: %s", line, l)
				}
				return out
			}
			out = append(out, l)
		}
	}
	cmd("a", "SELECT INBOX")
	cmd("b", "UID SEARCH RETURN (SAVE) "+criteria)
	var uids []imap.UID
	re := regexp.MustCompile(`UID (\d+)`)
	for _, l := range cmd("c", "UID FETCH $ (FLAGS)") {
		if m := re.FindStringSubmatch(l); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 32)
			uids = append(uids, imap.UID(n))
		}
	}
	slices.Sort(uids)
	return uids
}

func TestSessionIMAP4rev2(t *testing.T) {
	e := newSessEnv(t)
	e.caps = rev2Caps
	_, c := e.serve(nil)
	if !c.Caps().Has(imap.CapIMAP4rev2) {
		t.Fatalf("IMAP4rev2 not advertised: %v", c.Caps())
	}
	if ed, err := c.Enable(imap.CapIMAP4rev2).Wait(); err != nil || !ed.Caps.Has(imap.CapIMAP4rev2) {
		t.Fatalf("ENABLE IMAP4rev2: %+v %v", ed, err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages == 0 {
		t.Fatalf("SELECT %+v %v", sel, err)
	}
	// With IMAP4rev2 enabled every SEARCH is answered by ESEARCH.
	sd, err := c.Search(&imap.SearchCriteria{}, nil).Wait()
	if err != nil || sd.Count != sel.NumMessages && len(sd.AllSeqNums()) != int(sel.NumMessages) {
		t.Errorf("SEARCH ALL %+v %v", sd, err)
	}
	if _, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true}).Collect(); err != nil {
		t.Errorf("FETCH: %v", err)
	}
	if _, err := c.Status("Work/INBOX", &imap.StatusOptions{NumMessages: true, Size: true, NumDeleted: true}).Wait(); err != nil {
		t.Errorf("STATUS: %v", err)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Errorf("UNSELECT: %v", err)
	}
}

// noWildcardSession is an upstream session whose SELECT and EXAMINE
// report PERMANENTFLAGS without \*: the upstream cannot keep new
// keywords.
type noWildcardSession struct {
	imapserver.Session
}

// Select implements imapserver.Session.
func (s noWildcardSession) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	data, err := s.Session.Select(name, options)
	if data != nil {
		data.PermanentFlags = slices.DeleteFunc(data.PermanentFlags, func(f imap.Flag) bool { return f == imap.FlagWildcard })
	}
	return data, err
}

// Namespace implements imapserver.SessionNamespace.
func (s noWildcardSession) Namespace() (*imap.NamespaceData, error) {
	return s.Session.(imapserver.SessionNamespace).Namespace()
}

// Move implements imapserver.SessionMove.
func (s noWildcardSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	return s.Session.(imapserver.SessionMove).Move(w, numSet, dest)
}

func TestSessionKeptKeywords(t *testing.T) {
	e := newSessEnvWrapped(t, func(s imapserver.Session) imapserver.Session { return noWildcardSession{s} })
	e.caps = rev2Caps
	m1, c := e.serve(nil)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(sel.PermanentFlags, imap.FlagWildcard) {
		t.Errorf("PERMANENTFLAGS %v lacks \\*", sel.PermanentFlags)
	}
	n := sel.NumMessages
	const kw = imap.Flag("$Todo")
	if err := c.Store(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{kw, imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	// work cannot keep $Todo (the proxy does), home can; \Flagged goes
	// upstream on both.
	for name, up := range map[string]*memUpstream{"work": e.work, "home": e.home} {
		for uid, fs := range upstreamFlags(up, "INBOX") {
			if hasFlag(fs, kw) != (name == "home") || !slices.Contains(fs, imap.FlagFlagged) {
				t.Errorf("%s upstream UID %d flags %v", name, uid, fs)
			}
		}
	}
	// Take $Todo off the first message (its source is either).
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsDel, Silent: true, Flags: []imap.Flag{kw}}, nil).Close(); err != nil {
		t.Fatal(err)
	}

	check := func(c *imapclient.Client, when string) {
		t.Helper()
		bufs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
		if err != nil || len(bufs) != int(n) {
			t.Fatalf("%s: FETCH %d of %d: %v", when, len(bufs), n, err)
		}
		var want []imap.UID
		for i, b := range bufs {
			if hasFlag(b.Flags, kw) != (i > 0) || !slices.Contains(b.Flags, imap.FlagFlagged) {
				t.Errorf("%s: FETCH FLAGS of %d: %v", when, b.SeqNum, b.Flags)
			}
			if i > 0 {
				want = append(want, b.UID)
			}
		}
		sd, err := c.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{kw}}, nil).Wait()
		if err != nil || !slices.Equal(sd.AllUIDs(), want) {
			t.Errorf("%s: SEARCH KEYWORD %s: %v %v, want %v", when, kw, sd.AllUIDs(), err, want)
		}
		sd, err = c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{kw}}, nil).Wait()
		if err != nil || !slices.Equal(sd.AllUIDs(), []imap.UID{bufs[0].UID}) {
			t.Errorf("%s: SEARCH UNKEYWORD %s: %v %v, want %v", when, kw, sd.AllUIDs(), err, bufs[0].UID)
		}
	}
	check(c, "same session")

	// Another session of the same Manager.
	c2 := e.serveManager(m1, nil)
	if _, err := c2.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	check(c2, "second session")

	// A restart: a new Manager on the same store.
	c.Close()
	c2.Close()
	m1.Close()
	_, c3 := e.serve(nil)
	sel3, err := c3.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !hasFlag(sel3.Flags, kw) {
		t.Errorf("FLAGS %v lacks %s", sel3.Flags, kw)
	}
	check(c3, "after restart")

	// A COPY takes the kept keyword along.
	const later = imap.Flag("$Later")
	if _, err := c3.Select("Work/INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c3.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{later}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	cd, err := c3.Copy(imap.SeqSetNum(1), "Work/Sent").Wait()
	if err != nil || cd == nil {
		t.Fatalf("COPY: %+v %v", cd, err)
	}
	if _, err := c3.Select("Work/Sent", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	bufs, err := c3.Fetch(cd.DestUIDs, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil || len(bufs) != 1 || !hasFlag(bufs[0].Flags, later) {
		t.Errorf("copy's FETCH FLAGS: %v %v", bufs, err)
	}
}
