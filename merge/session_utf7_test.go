package merge

import (
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// unselectCounter counts the UNSELECT and CLOSE commands an upstream
// receives. Refusing them in the fake would not do: imapserver's own
// SELECT handling calls Session.Unselect.
type unselectCounter struct {
	net.Conn
	n *atomic.Int32
}

func (c *unselectCounter) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	up := strings.ToUpper(string(p[:n]))
	if strings.Contains(up, " UNSELECT\r\n") || strings.Contains(up, " CLOSE\r\n") {
		c.n.Add(1)
	}
	return n, err
}

var unselectCaps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapUnselect: {}}

// TestSessionFakeUTF7AndUnselect: folder names outside ASCII travel as
// modified UTF-7 on the upstream's wire and as UTF-8 in the proxy's
// tree (LIST, SELECT, CREATE, RENAME, STATUS, APPEND); and an upstream
// that refuses UNSELECT does not stop a client from leaving and
// changing mailboxes: the proxy never sends UNSELECT (nor CLOSE, which
// would expunge) upstream, and SELECTs the next mailbox instead, so an
// upstream answering them NO changes nothing.
func TestSessionFakeUTF7AndUnselect(t *testing.T) {
	var unselects atomic.Int32
	count := func(c net.Conn) net.Conn { return &unselectCounter{Conn: c, n: &unselects} }
	work := startFakeMem(t, unselectCaps, nil, count)
	home := startFakeMem(t, unselectCaps, nil, count)
	const draft = "Entwürfe"
	if err := work.user.Create(draft, nil); err != nil {
		t.Fatal(err)
	}
	putBody(t, work.memUpstream, draft, "brouillon")
	putBody(t, home.memUpstream, "INBOX", "home one")

	// The upstream really sends modified UTF-7 (imapclient decodes it).
	raw, err := imapclient.DialInsecure(work.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Login(memUser, memPassword).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Select(draft, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	raw.Unselect().Wait()
	raw.Close()
	if unselects.Load() != 1 {
		t.Fatalf("the counter saw %d UNSELECT commands, want 1", unselects.Load())
	}
	unselects.Store(0)

	e := fakeEnv(t, work.memUpstream, home.memUpstream, 0)
	_, c := e.serve(nil)
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(list, func(l *imap.ListData) bool { return l.Mailbox == "Work/"+draft }) {
		t.Fatalf("LIST lacks Work/%s: %v", draft, listNames(list))
	}
	sd, err := c.Select("Work/"+draft, nil).Wait()
	if err != nil || sd.NumMessages != 1 {
		t.Fatalf("SELECT Work/%s: %+v %v", draft, sd, err)
	}
	// Leaving it: UNSELECT and CLOSE through the proxy, then another
	// mailbox on the same upstream.
	if err := c.Unselect().Wait(); err != nil {
		t.Fatalf("UNSELECT: %v", err)
	}
	if _, err := c.Select("Work/INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.UnselectAndExpunge().Wait(); err != nil {
		t.Fatalf("CLOSE: %v", err)
	}
	if sd, err := c.Select("INBOX", nil).Wait(); err != nil || sd.NumMessages != 1 {
		t.Fatalf("SELECT INBOX after UNSELECT and CLOSE: %+v %v", sd, err)
	}

	// CREATE and RENAME with non-ASCII names land upstream decoded.
	const made, renamed = "Ünïcode/子", "Ärchiv"
	if err := c.Create("Work/"+made, nil).Wait(); err != nil {
		t.Fatalf("CREATE: %v", err)
	}
	if err := c.Rename("Work/"+draft, "Work/"+renamed, nil).Wait(); err != nil {
		t.Fatalf("RENAME: %v", err)
	}
	names := memMailboxes(t, work.memUpstream)
	for _, want := range []string{made, renamed} {
		if !slices.Contains(names, want) {
			t.Errorf("upstream mailboxes %v lack %q", names, want)
		}
	}
	if slices.Contains(names, draft) {
		t.Errorf("upstream still has %q after RENAME", draft)
	}
	if n := unselects.Load(); n != 0 {
		t.Errorf("the proxy sent %d UNSELECT or CLOSE commands upstream", n)
	}
	st, err := c.Status("Work/"+renamed, &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || st.NumMessages == nil || *st.NumMessages != 1 {
		t.Fatalf("STATUS Work/%s: %+v %v", renamed, st, err)
	}
}

// listNames returns the names of a LIST reply.
func listNames(l []*imap.ListData) []string {
	var out []string
	for _, d := range l {
		out = append(out, d.Mailbox)
	}
	return out
}

// memMailboxes lists the memserver user's mailboxes with a client of
// its own.
func memMailboxes(t *testing.T, m *memUpstream) []string {
	t.Helper()
	raw, err := imapclient.DialInsecure(m.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.Login(memUser, memPassword).Wait(); err != nil {
		t.Fatal(err)
	}
	l, err := raw.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	return listNames(l)
}
