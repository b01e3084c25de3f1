package merge

// Edge cases of upstreams through the merged session, on imapmemserver
// upstreams wrapped to change what they advertise and how they answer: a
// Courier/Cyrus-like "INBOX." personal namespace with "." as delimiter, an
// upstream without IDLE, and one that stalls in the middle of a FETCH.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"imapproxy/store"
)

// fakeMem is an imapmemserver upstream whose sessions wrap can replace
// and whose connections conn can wrap (both may be nil).
type fakeMem struct {
	*memUpstream
}

func startFakeMem(t *testing.T, caps imap.CapSet, wrap func(imapserver.Session) imapserver.Session, conn func(net.Conn) net.Conn) *fakeMem {
	t.Helper()
	m := &fakeMem{memUpstream: &memUpstream{t: t}}
	mem := imapmemserver.New()
	m.user = imapmemserver.NewUser(memUser, memPassword)
	if err := m.user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(m.user)
	m.memUpstream.serve(mem, "127.0.0.1:0", caps, wrap, conn)
	return m
}

// wrapListener wraps accepted connections.
type wrapListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l *wrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil || l.wrap == nil {
		return c, err
	}
	return l.wrap(c), nil
}

// fakeEnv is a merged user over two upstreams: "work" at Work/ and "home"
// at Home/, unified INBOX, default account work.
func fakeEnv(t *testing.T, work, home *memUpstream, homeTimeout time.Duration) *sessEnv {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	wo, ho := work.account(), home.account()
	wo.Name, ho.Name = "work", "home"
	if homeTimeout > 0 {
		ho.CommandTimeout = homeTimeout
	}
	return &sessEnv{t: t, work: work, home: home, st: st, spec: UserSpec{
		User: "alice",
		Accounts: []AccountSpec{
			{Name: "work", Prefix: "Work", Options: wo},
			{Name: "home", Prefix: "Home", Options: ho},
		},
		UnifiedInbox:   true,
		DefaultAccount: "work",
	}}
}

// putBody appends a message with the given subject directly upstream.
func putBody(t *testing.T, m *memUpstream, mailbox, subject string) {
	t.Helper()
	body := "From: a@example.com\r\nSubject: " + subject + "\r\n\r\nbody of " + subject + "\r\n"
	if _, err := m.user.Append(mailbox, bytes.NewReader([]byte(body)), &imap.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
}

var plainCaps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapMove: {}, imap.CapNamespace: {}}

// dotSession shows the memserver's mailboxes the way Courier and Cyrus
// do: delimiter ".", personal namespace "INBOX.", so that the memserver's
// "a/b" is "INBOX.a.b" on the wire. names holds the memserver's mailboxes.
type dotSession struct {
	imapserver.Session
	names *dotNames
}

type dotNames struct {
	mu    sync.Mutex
	names []string // memserver names
}

func (n *dotNames) add(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !slices.Contains(n.names, name) {
		n.names = append(n.names, name)
	}
}

func (n *dotNames) remove(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.names = slices.DeleteFunc(n.names, func(s string) bool { return s == name })
}

func (n *dotNames) list() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Sorted(slices.Values(n.names))
}

var errOutsideNamespace = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "outside the personal namespace INBOX."}

// inner maps a wire name to the memserver's.
func (s *dotSession) inner(wire string) (string, error) {
	if strings.EqualFold(wire, "INBOX") {
		return "INBOX", nil
	}
	rest, ok := strings.CutPrefix(wire, "INBOX.")
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return "", errOutsideNamespace
	}
	return strings.ReplaceAll(rest, ".", "/"), nil
}

// wire maps a memserver name to the wire's.
func wireName(inner string) string {
	if inner == "INBOX" {
		return inner
	}
	return "INBOX." + strings.ReplaceAll(inner, "/", ".")
}

func (s *dotSession) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "INBOX.", Delim: '.'}}}, nil
}

func (s *dotSession) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: '.'})
	}
	names := s.names.list()
	for _, in := range names {
		name := wireName(in)
		if !slices.ContainsFunc(patterns, func(p string) bool { return imapserver.MatchList(name, '.', ref, p) }) {
			continue
		}
		d := &imap.ListData{Mailbox: name, Delim: '.'}
		if name != "INBOX" {
			children := slices.ContainsFunc(names, func(o string) bool { return strings.HasPrefix(o, in+"/") })
			if children {
				d.Attrs = append(d.Attrs, imap.MailboxAttrHasChildren)
			} else {
				d.Attrs = append(d.Attrs, imap.MailboxAttrHasNoChildren)
			}
		}
		if options != nil && options.SelectSubscribed {
			d.Attrs = append(d.Attrs, imap.MailboxAttrSubscribed)
		}
		if err := w.WriteList(d); err != nil {
			return err
		}
	}
	return nil
}

func (s *dotSession) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	in, err := s.inner(name)
	if err != nil {
		return nil, err
	}
	return s.Session.Select(in, options)
}

func (s *dotSession) Create(name string, options *imap.CreateOptions) error {
	in, err := s.inner(strings.TrimSuffix(name, "."))
	if err != nil {
		return err
	}
	if err := s.Session.Create(in, options); err != nil {
		return err
	}
	s.names.add(in)
	return nil
}

func (s *dotSession) Delete(name string) error {
	in, err := s.inner(name)
	if err != nil {
		return err
	}
	if err := s.Session.Delete(in); err != nil {
		return err
	}
	s.names.remove(in)
	return nil
}

func (s *dotSession) Rename(name, newName string, options *imap.RenameOptions) error {
	in, err := s.inner(name)
	if err != nil {
		return err
	}
	to, err := s.inner(newName)
	if err != nil {
		return err
	}
	if err := s.Session.Rename(in, to, options); err != nil {
		return err
	}
	s.names.remove(in)
	s.names.add(to)
	return nil
}

func (s *dotSession) Subscribe(name string) error {
	in, err := s.inner(name)
	if err != nil {
		return err
	}
	return s.Session.Subscribe(in)
}

func (s *dotSession) Unsubscribe(name string) error {
	in, err := s.inner(name)
	if err != nil {
		return err
	}
	return s.Session.Unsubscribe(in)
}

func (s *dotSession) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	in, err := s.inner(name)
	if err != nil {
		return nil, err
	}
	d, err := s.Session.Status(in, options)
	if d != nil {
		d.Mailbox = name
	}
	return d, err
}

func (s *dotSession) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	in, err := s.inner(name)
	if err != nil {
		io.Copy(io.Discard, r)
		return nil, err
	}
	return s.Session.Append(in, r, options)
}

func (s *dotSession) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	in, err := s.inner(dest)
	if err != nil {
		return nil, err
	}
	return s.Session.Copy(numSet, in)
}

func (s *dotSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	in, err := s.inner(dest)
	if err != nil {
		return err
	}
	return s.Session.(imapserver.SessionMove).Move(w, numSet, in)
}

func TestSessionFakeInboxNamespace(t *testing.T) {
	names := &dotNames{names: []string{"INBOX"}}
	home := startFakeMem(t, plainCaps, func(s imapserver.Session) imapserver.Session {
		return &dotSession{Session: s, names: names}
	}, nil)
	for _, n := range []string{"Lists", "Lists/Dev", "Sent"} {
		if err := home.user.Create(n, nil); err != nil {
			t.Fatal(err)
		}
		names.add(n)
	}
	putBody(t, home.memUpstream, "INBOX", "home inbox")
	putBody(t, home.memUpstream, "Lists/Dev", "home dev")
	work := startFakeMem(t, plainCaps, nil, nil)
	putBody(t, work.memUpstream, "INBOX", "work inbox")
	e := fakeEnv(t, work.memUpstream, home.memUpstream, 0)
	_, c := e.serve(nil)

	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range list {
		got = append(got, l.Mailbox)
		if l.Delim != '/' {
			t.Errorf("LIST %s: delimiter %q", l.Mailbox, l.Delim)
		}
	}
	for _, want := range []string{"INBOX", "Home/INBOX", "Home/Lists", "Home/Lists/Dev", "Home/Sent", "Work/INBOX"} {
		if !slices.Contains(got, want) {
			t.Errorf("LIST lacks %s: %q", want, got)
		}
	}
	for _, name := range got {
		if strings.Contains(name, "INBOX.") || strings.HasPrefix(name, "Home/INBOX/") || strings.Contains(name, ".") {
			t.Errorf("LIST shows the upstream's namespace or delimiter: %s in %q", name, got)
		}
	}

	// Reading through the translated names.
	if _, err := c.Select("Home/Lists/Dev", nil).Wait(); err != nil {
		t.Fatalf("SELECT Home/Lists/Dev: %v", err)
	}
	sec := &imap.FetchItemBodySection{Peek: true}
	bufs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil || len(bufs) != 1 || !bytes.Contains(bufs[0].FindBodySection(sec), []byte("body of home dev")) {
		t.Errorf("FETCH in Home/Lists/Dev: %+v %v", bufs, err)
	}
	sd, err := c.Select("INBOX", nil).Wait()
	if err != nil || sd.NumMessages != 2 {
		t.Errorf("unified INBOX: %+v %v", sd, err)
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatal(err)
	}

	// CREATE under the prefix lands in the namespace.
	if err := c.Create("Home/Projects", nil).Wait(); err != nil {
		t.Fatalf("CREATE Home/Projects: %v", err)
	}
	if err := c.Create("Home/Lists/Go", nil).Wait(); err != nil {
		t.Fatalf("CREATE Home/Lists/Go: %v", err)
	}
	// Quoted or not: the names reach the upstream in its namespace.
	sent := strings.ReplaceAll(strings.Join(home.sent(), ""), `"`, "")
	for _, want := range []string{"CREATE INBOX.Projects", "CREATE INBOX.Lists.Go"} {
		if !strings.Contains(sent, want) {
			t.Errorf("the upstream was not sent %q", want)
		}
	}
	if l := names.list(); !slices.Contains(l, "Projects") || !slices.Contains(l, "Lists/Go") {
		t.Errorf("upstream mailboxes after CREATE: %q", l)
	}
	if _, err := home.user.Status("Projects", &imap.StatusOptions{NumMessages: true}); err != nil {
		t.Errorf("CREATE Home/Projects did not reach the upstream: %v", err)
	}
	list, err = c.List("", "Home/*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	got = got[:0]
	for _, l := range list {
		got = append(got, l.Mailbox)
	}
	if !slices.Contains(got, "Home/Projects") || !slices.Contains(got, "Home/Lists/Go") {
		t.Errorf("LIST Home/* after CREATE: %q", got)
	}
	if st, err := c.Status("Home/Projects", &imap.StatusOptions{NumMessages: true}).Wait(); err != nil || st.Mailbox != "Home/Projects" {
		t.Errorf("STATUS Home/Projects: %+v %v", st, err)
	}
	if err := c.Rename("Home/Projects", "Home/Archive", nil).Wait(); err != nil {
		t.Errorf("RENAME: %v", err)
	}
	if !strings.Contains(strings.ReplaceAll(strings.Join(home.sent(), ""), `"`, ""), "RENAME INBOX.Projects INBOX.Archive") {
		t.Errorf("the upstream was not sent RENAME INBOX.Projects INBOX.Archive")
	}
}

// capStripConn removes IDLE from the CAPABILITY lists the server sends,
// and counts the IDLE commands the client sends.
type capStripConn struct {
	net.Conn
	idles *atomic.Int32
}

func (c *capStripConn) Write(b []byte) (int, error) {
	if !bytes.Contains(b, []byte("CAPABILITY")) {
		return c.Conn.Write(b)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	for i, l := range lines {
		if bytes.Contains(l, []byte("CAPABILITY")) {
			lines[i] = bytes.ReplaceAll(l, []byte(" IDLE"), nil)
		}
	}
	if _, err := c.Conn.Write(bytes.Join(lines, nil)); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *capStripConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if bytes.Contains(bytes.ToUpper(b[:n]), []byte(" IDLE\r\n")) {
		c.idles.Add(1)
	}
	return n, err
}

// noIdleSession refuses IDLE, as a server without it would.
type noIdleSession struct{ imapserver.Session }

func (noIdleSession) Idle(*imapserver.UpdateWriter, <-chan struct{}) error {
	return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "unknown command IDLE"}
}

func (s noIdleSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	return s.Session.(imapserver.SessionMove).Move(w, numSet, dest)
}

func (s noIdleSession) Namespace() (*imap.NamespaceData, error) {
	return s.Session.(imapserver.SessionNamespace).Namespace()
}

func TestSessionFakeNoIdle(t *testing.T) {
	var idles atomic.Int32
	home := startFakeMem(t, plainCaps, func(s imapserver.Session) imapserver.Session { return noIdleSession{s} },
		func(c net.Conn) net.Conn { return &capStripConn{Conn: c, idles: &idles} })
	putBody(t, home.memUpstream, "INBOX", "home one")

	// The wrapped server advertises no IDLE.
	raw, err := imapclient.DialInsecure(home.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Login(memUser, memPassword).Wait(); err != nil {
		t.Fatal(err)
	}
	if caps, err := raw.Capability().Wait(); err != nil || caps.Has(imap.CapIdle) || !caps.Has(imap.CapIMAP4rev1) {
		t.Fatalf("the fake upstream's capabilities: %v %v", caps, err)
	}
	raw.Close()

	work := startFakeMem(t, plainCaps, nil, nil)
	putBody(t, work.memUpstream, "INBOX", "work one")
	e := fakeEnv(t, work.memUpstream, home.memUpstream, 0)
	exists := make(chan uint32, 16)
	_, c := e.serve(&imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	})
	for _, mb := range []string{"Home/INBOX", "INBOX"} {
		sd, err := c.Select(mb, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		idle, err := c.Idle()
		if err != nil {
			t.Fatal(err)
		}
		// After the SELECT's sync: only polling can find it.
		time.Sleep(1500 * time.Millisecond)
		putBody(t, home.memUpstream, "INBOX", "home new in "+mb)
		select {
		case n := <-exists:
			if n != sd.NumMessages+1 {
				t.Errorf("%s: EXISTS %d, want %d", mb, n, sd.NumMessages+1)
			}
		case <-time.After(8 * time.Second):
			t.Errorf("%s: no EXISTS within 8s from an upstream without IDLE (polled every second)", mb)
		}
		if err := idle.Close(); err != nil {
			t.Fatal(err)
		}
		if err := idle.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if n := idles.Load(); n != 0 {
		t.Errorf("the proxy sent IDLE %d times to an upstream that does not advertise it", n)
	}
}

// stallSession stalls every FETCH of a message body until released: an
// upstream that hangs in the middle of a FETCH. With midLiteral it first
// sends half of a 1 MB body literal for message 1 (UID 1).
type stallSession struct {
	imapserver.Session
	midLiteral bool
	stalled    chan<- struct{}
	release    <-chan struct{}
}

func (s stallSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	if len(options.BodySection) == 0 && len(options.BinarySection) == 0 {
		return s.Session.Fetch(w, numSet, options)
	}
	var rw *imapserver.FetchResponseWriter
	var wc io.WriteCloser
	if s.midLiteral && len(options.BodySection) > 0 {
		rw = w.CreateMessage(1)
		rw.WriteUID(1)
		wc = rw.WriteBodySection(options.BodySection[0], 1<<20)
		// More than imapserver buffers, so that it reaches the proxy.
		wc.Write(bytes.Repeat([]byte("x"), 1<<19))
	}
	select {
	case s.stalled <- struct{}{}:
	default:
	}
	<-s.release
	if rw != nil {
		// Unlock the connection's writer (the client has gone).
		wc.Write(bytes.Repeat([]byte("x"), 1<<19))
		wc.Close()
		rw.Close()
	}
	return errors.New("released")
}

func (s stallSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	return s.Session.(imapserver.SessionMove).Move(w, numSet, dest)
}

func (s stallSession) Namespace() (*imap.NamespaceData, error) {
	return s.Session.(imapserver.SessionNamespace).Namespace()
}

func TestSessionFakeStalledFetch(t *testing.T) {
	t.Run("before the body", func(t *testing.T) { testStalledFetch(t, false) })
	t.Run("mid-literal", func(t *testing.T) { testStalledFetch(t, true) })
}

// testStalledFetch FETCHes the body of a message of an upstream that
// stalls, and checks that the client gets NO [UNAVAILABLE] or loses its
// connection within the command timeout, and that the other account
// keeps working.
func testStalledFetch(t *testing.T, midLiteral bool) {
	stalled := make(chan struct{}, 1)
	release := make(chan struct{})
	home := startFakeMem(t, plainCaps, func(s imapserver.Session) imapserver.Session {
		return stallSession{Session: s, midLiteral: midLiteral, stalled: stalled, release: release}
	}, nil)
	t.Cleanup(func() { close(release) }) // before the server closes
	putBody(t, home.memUpstream, "INBOX", "home stalls")
	work := startFakeMem(t, plainCaps, nil, nil)
	putBody(t, work.memUpstream, "INBOX", "work answers")
	const timeout = time.Second
	e := fakeEnv(t, work.memUpstream, home.memUpstream, timeout)
	_, c := e.serve(nil)

	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	sec := &imap.FetchItemBodySection{Peek: true}
	env, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil || len(env) != 2 {
		t.Fatalf("FETCH ENVELOPE: %+v %v", env, err)
	}
	var homeUID, workUID imap.UID
	for _, b := range env {
		switch b.Envelope.Subject {
		case "home stalls":
			homeUID = b.UID
		case "work answers":
			workUID = b.UID
		}
	}
	if homeUID == 0 || workUID == 0 {
		t.Fatalf("unified INBOX: %+v", env)
	}

	if midLiteral {
		// A raw client: imapclient itself races when the server closes the
		// connection in the middle of a literal. The connection must end
		// within the command timeout; a client left waiting for the rest of
		// the literal would wait for ever.
		raw, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(timeout + 4*time.Second))
		fmt.Fprintf(raw, "a SELECT INBOX\r\nb UID FETCH %d BODY.PEEK[]\r\n", homeUID)
		start := time.Now()
		_, err = io.Copy(io.Discard, raw)
		if err != nil {
			t.Fatalf("the connection did not end after a half-written literal (%v after %v)", err, time.Since(start))
		}
		select {
		case <-stalled:
		default:
			t.Fatal("the upstream was not asked for the body")
		}
		t.Logf("the connection ended %v after the FETCH", time.Since(start))
		_, c = e.serve(nil)
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		sec := &imap.FetchItemBodySection{Peek: true}
		bufs, err := c.Fetch(imap.UIDSetNum(workUID), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
		if err != nil || len(bufs) != 1 || !bytes.Contains(bufs[0].FindBodySection(sec), []byte("body of work answers")) {
			t.Errorf("FETCH of work's message after home stalled: %+v %v", bufs, err)
		}
		return
	}

	// The FETCH, with a deadline of our own: a client waiting for the rest
	// of a literal would wait forever.
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := c.Fetch(imap.UIDSetNum(homeUID), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
		done <- err
	}()
	limit := timeout + 4*time.Second
	hung := false
	select {
	case err = <-done:
	case <-time.After(limit):
		hung = true
		c.Close()
		err = <-done
	}
	took := time.Since(start)
	select {
	case <-stalled:
	default:
		t.Fatalf("the upstream was not asked for the body (FETCH: %v)", err)
	}
	ie, isIMAP := errors.AsType[*imap.Error](err)
	switch {
	case hung:
		t.Fatalf("FETCH on a stalled upstream hung for %v, command timeout %v", took, timeout)
	case err == nil:
		t.Errorf("FETCH of a message on a stalled upstream succeeded")
	case isIMAP && (ie.Type != imap.StatusResponseTypeNo || ie.Code != imap.ResponseCodeUnavailable):
		t.Errorf("FETCH of a message on a stalled upstream: %v, want NO [UNAVAILABLE]", err)
	case isIMAP && midLiteral:
		t.Errorf("FETCH answered %v after a half-written literal; the connection should end", err)
	}
	if !isIMAP {
		// The connection ended: a new one for the rest.
		t.Logf("FETCH on a stalled upstream ended the connection after %v: %v", took, err)
		_, c = e.serve(nil)
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
	}

	// The other account keeps working, in the unified INBOX and its own.
	bufs, err := c.Fetch(imap.UIDSetNum(workUID), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil || len(bufs) != 1 || !bytes.Contains(bufs[0].FindBodySection(sec), []byte("body of work answers")) {
		t.Errorf("FETCH of work's message after home stalled: %+v %v", bufs, err)
	}
	if _, err := c.Select("Work/INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	bufs, err = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{sec}}).Collect()
	if err != nil || len(bufs) != 1 || !bytes.Contains(bufs[0].FindBodySection(sec), []byte("body of work answers")) {
		t.Errorf("FETCH in Work/INBOX after home stalled: %+v %v", bufs, err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Errorf("NOOP: %v", err)
	}

}
