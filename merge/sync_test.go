package merge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	"imapproxy/store"
	"imapproxy/upstream"
)

const (
	memUser     = "alice"
	memPassword = "secret"
)

// memUpstream is an imapmemserver upstream on 127.0.0.1 that records
// what its clients send and can cut their connections.
type memUpstream struct {
	t    *testing.T
	user *imapmemserver.User
	addr string

	mu    sync.Mutex
	conns []*logConn
}

// logConn is a server-side connection that keeps what the client sent.
type logConn struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *logConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	c.buf.Write(b[:n])
	c.mu.Unlock()
	return n, err
}

func (c *logConn) sent() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// logListener wraps accepted connections in logConns.
type logListener struct {
	net.Listener
	m *memUpstream
}

func (l *logListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	lc := &logConn{Conn: c}
	l.m.mu.Lock()
	l.m.conns = append(l.m.conns, lc)
	l.m.mu.Unlock()
	return lc, nil
}

// serverLog sends the server's log to t.Logf until the test ends.
type serverLog struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (l *serverLog) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Logf("imapserver: "+format, args...)
	}
}

// startMem starts an upstream with one user who has an INBOX.
func startMem(t *testing.T) *memUpstream {
	t.Helper()
	m := &memUpstream{t: t}
	mem := imapmemserver.New()
	m.user = imapmemserver.NewUser(memUser, memPassword)
	if err := m.user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(m.user)
	m.serve(mem, "127.0.0.1:0", imap.CapSet{imap.CapIMAP4rev1: {}}, nil, nil)
	return m
}

// serve serves mem on addr ("127.0.0.1:0": any port) with caps until the
// test ends: each session is a memserver session passed through
// wrapSession, each connection through wrapConn (either may be nil), and
// the server's commands are recorded for m.sent.
func (m *memUpstream) serve(mem *imapmemserver.Server, addr string, caps imap.CapSet,
	wrapSession func(imapserver.Session) imapserver.Session, wrapConn func(net.Conn) net.Conn) {
	t := m.t
	t.Helper()
	logger := &serverLog{t: t}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			var s imapserver.Session = mem.NewSession()
			if wrapSession != nil {
				s = wrapSession(s)
			}
			return s, nil, nil
		},
		Caps:         caps,
		Logger:       logger,
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	m.addr = ln.Addr().String()
	var served net.Listener = &logListener{Listener: ln, m: m}
	if wrapConn != nil {
		served = &wrapListener{Listener: served, wrap: wrapConn}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(served)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
		logger.mu.Lock()
		logger.done = true
		logger.mu.Unlock()
	})
}

// account returns the options to log in to the upstream.
func (m *memUpstream) account() upstream.AccountOptions {
	return upstream.AccountOptions{
		Options: upstream.Options{
			Name:           "mem",
			Address:        m.addr,
			TLS:            upstream.TLSNone,
			CommandTimeout: 5 * time.Second,
		},
		Credentials: upstream.Credentials{Username: memUser, Password: memPassword},
	}
}

// dial returns a logged-in Client, closed when the test ends.
func (m *memUpstream) dial() *upstream.Client {
	m.t.Helper()
	c, err := upstream.DialClient(context.Background(), m.account())
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { c.Close() })
	return c
}

// put appends a message to mailbox directly, as mail delivery would; the
// server's sessions hear of it.
func (m *memUpstream) put(mailbox string, flags ...imap.Flag) imap.UID {
	m.t.Helper()
	body := fmt.Sprintf("Subject: test %d\r\n\r\nbody\r\n", time.Now().UnixNano())
	d, err := m.user.Append(mailbox, bytes.NewReader([]byte(body)), &imap.AppendOptions{Flags: flags})
	if err != nil {
		m.t.Fatal(err)
	}
	return d.UID
}

// sent returns what each connection's client sent, in order of accept.
func (m *memUpstream) sent() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, c := range m.conns {
		out = append(out, c.sent())
	}
	return out
}

// kill closes every client connection from the server's side.
func (m *memUpstream) kill() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.conns {
		c.Conn.Close()
	}
}

// admin runs fn on a Client of its own with mailbox selected read-write:
// another user of the upstream account.
func (m *memUpstream) admin(mailbox string, fn func(*imapclient.Client) error) {
	m.t.Helper()
	c := m.dial()
	defer c.Close()
	err := c.Do(context.Background(), func(ic *imapclient.Client) error {
		if _, err := ic.Select(mailbox, nil).Wait(); err != nil {
			return err
		}
		return fn(ic)
	})
	if err != nil {
		m.t.Fatal(err)
	}
}

// expunge removes the messages with uids from mailbox.
func (m *memUpstream) expunge(mailbox string, uids ...imap.UID) {
	m.t.Helper()
	m.admin(mailbox, func(ic *imapclient.Client) error {
		set := imap.UIDSetNum(uids...)
		store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}
		if err := ic.Store(set, store, nil).Close(); err != nil {
			return err
		}
		return ic.Expunge().Close()
	})
}

// openStore returns a SQLite store in a temporary directory and a virtual
// mailbox in it.
func openStore(t *testing.T) (store.Store, store.VMailbox) {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	vm, err := st.VMailbox(ctx, "user", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	return st, vm
}

func vuidsOf(msgs []SourceMessage) []uint32 {
	var out []uint32
	for _, m := range msgs {
		out = append(out, m.VUID)
	}
	return out
}

// checkStore compares the store's rows of the source with res.
func checkStore(t *testing.T, st store.Store, vm store.VMailbox, mailbox string, res SyncResult) {
	t.Helper()
	rows, err := st.SourceMessages(context.Background(), vm.ID, "acct", mailbox)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(res.Messages) {
		t.Fatalf("store has %d rows, result %d messages", len(rows), len(res.Messages))
	}
	for i, r := range rows {
		m := res.Messages[i]
		if r.VUID != m.VUID || r.UID != uint32(m.UID) || r.UIDValidity != res.UIDValidity {
			t.Errorf("row %d = %+v, message %+v at UIDVALIDITY %d", i, r, m, res.UIDValidity)
		}
	}
}

func TestSyncSource(t *testing.T) {
	m := startMem(t)
	st, vm := openStore(t)
	ctx := context.Background()
	c := m.dial()
	doSync := func() SyncResult {
		t.Helper()
		res, err := SyncSource(ctx, st, vm, "acct", c, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		checkStore(t, st, vm, "INBOX", res)
		return res
	}

	// An empty mailbox.
	r0 := doSync()
	if len(r0.Messages) != 0 || len(r0.Added) != 0 || len(r0.Removed) != 0 || r0.UIDValidity == 0 {
		t.Fatalf("empty mailbox: %+v", r0)
	}
	if !slices.Contains(r0.PermanentFlags, imap.FlagWildcard) {
		t.Errorf("PermanentFlags = %v", r0.PermanentFlags)
	}

	u1 := m.put("INBOX", imap.FlagFlagged)
	u2 := m.put("INBOX")
	u3 := m.put("INBOX", imap.FlagAnswered, "$Label")

	// The first sync maps all, in UID order.
	r1 := doSync()
	if len(r1.Messages) != 3 || !slices.Equal(r1.Added, vuidsOf(r1.Messages)) || len(r1.Removed) != 0 {
		t.Fatalf("first sync: %+v", r1)
	}
	for i, uid := range []imap.UID{u1, u2, u3} {
		if r1.Messages[i].UID != uid || (i > 0 && r1.Messages[i].VUID <= r1.Messages[i-1].VUID) {
			t.Errorf("first sync: messages %+v", r1.Messages)
		}
	}
	flags := func(fs []imap.Flag) string {
		s := make([]string, len(fs))
		for i, f := range fs {
			s[i] = string(f)
		}
		slices.Sort(s)
		return strings.Join(s, " ")
	}
	for i, want := range []string{`\Flagged`, ``, `$Label \Answered`} {
		if got := flags(r1.Messages[i].Flags); !strings.EqualFold(got, want) {
			t.Errorf("message %d flags %q, want %q", i, got, want)
		}
	}

	// Nothing changed.
	r2 := doSync()
	if len(r2.Added) != 0 || len(r2.Removed) != 0 || !slices.Equal(vuidsOf(r2.Messages), vuidsOf(r1.Messages)) {
		t.Fatalf("second sync: %+v", r2)
	}

	// A new message gets a higher vuid.
	m.admin("INBOX", func(ic *imapclient.Client) error {
		const msg = "Subject: appended\r\n\r\nhi\r\n"
		cmd := ic.Append("INBOX", int64(len(msg)), nil)
		if _, err := cmd.Write([]byte(msg)); err != nil {
			return err
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		_, err := cmd.Wait()
		return err
	})
	r3 := doSync()
	if len(r3.Added) != 1 || len(r3.Removed) != 0 || len(r3.Messages) != 4 ||
		r3.Added[0] <= slices.Max(r1.Added) || r3.Messages[3].VUID != r3.Added[0] {
		t.Fatalf("after APPEND: %+v", r3)
	}

	// An expunged message's vuid is removed.
	m.expunge("INBOX", u2)
	r4 := doSync()
	if len(r4.Added) != 0 || !slices.Equal(r4.Removed, []uint32{r1.Messages[1].VUID}) || len(r4.Messages) != 3 {
		t.Fatalf("after EXPUNGE: %+v", r4)
	}
	if slices.Contains(vuidsOf(r4.Messages), r1.Messages[1].VUID) {
		t.Errorf("expunged vuid still listed: %+v", r4.Messages)
	}

	// Syncing never set \Seen, and used EXAMINE only.
	for _, msg := range r4.Messages {
		if slices.Contains(msg.Flags, imap.FlagSeen) {
			t.Errorf("message %+v has \\Seen", msg)
		}
	}
	var syncConn string
	for _, s := range m.sent() {
		if strings.Contains(s, "UID FETCH 1:* (UID FLAGS)") {
			syncConn = s
		}
	}
	if syncConn == "" || !strings.Contains(syncConn, "EXAMINE INBOX") ||
		strings.Contains(syncConn, "SELECT") || strings.Contains(syncConn, "STORE") || strings.Contains(syncConn, "EXPUNGE") {
		t.Errorf("the sync connection sent:\n%s", syncConn)
	}

	// Everything gone.
	m.expunge("INBOX", u1, u3, r3.Messages[3].UID)
	r5 := doSync()
	if len(r5.Messages) != 0 || len(r5.Added) != 0 || !slices.Equal(r5.Removed, vuidsOf(r4.Messages)) {
		t.Fatalf("after expunging all: %+v", r5)
	}
}

func TestSyncSourceUIDValidity(t *testing.T) {
	m := startMem(t)
	st, vm := openStore(t)
	ctx := context.Background()
	c := m.dial()
	if err := m.user.Create("Work", nil); err != nil {
		t.Fatal(err)
	}
	m.put("Work")
	m.put("Work", imap.FlagSeen)
	// Another source in the same virtual mailbox is left alone.
	m.put("INBOX")
	other, err := SyncSource(ctx, st, vm, "acct", c, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	r1, err := SyncSource(ctx, st, vm, "acct", c, "Work")
	if err != nil {
		t.Fatal(err)
	}
	if len(r1.Added) != 2 || r1.Added[0] <= other.Added[0] {
		t.Fatalf("first sync: %+v", r1)
	}

	// Delete and re-create the mailbox: a new UIDVALIDITY, the same UIDs.
	if err := m.user.Delete("Work"); err != nil {
		t.Fatal(err)
	}
	if err := m.user.Create("Work", nil); err != nil {
		t.Fatal(err)
	}
	m.put("Work")
	m.put("Work")
	m.put("Work")
	r2, err := SyncSource(ctx, st, vm, "acct", c, "Work")
	if err != nil {
		t.Fatal(err)
	}
	checkStore(t, st, vm, "Work", r2)
	if r2.UIDValidity == r1.UIDValidity {
		t.Fatalf("UIDVALIDITY did not change: %d", r2.UIDValidity)
	}
	if !slices.Equal(r2.Removed, r1.Added) {
		t.Errorf("Removed = %v, want %v", r2.Removed, r1.Added)
	}
	if len(r2.Added) != 3 || !slices.Equal(r2.Added, vuidsOf(r2.Messages)) || r2.Added[0] <= slices.Max(r1.Added) {
		t.Errorf("Added = %v after %v", r2.Added, r1.Added)
	}
	for i, msg := range r2.Messages {
		if msg.UID != imap.UID(i+1) {
			t.Errorf("message %d: %+v", i, msg)
		}
	}

	// The other source kept its rows.
	rows, err := st.SourceMessages(ctx, vm.ID, "acct", "INBOX")
	if err != nil || len(rows) != 1 || rows[0].VUID != other.Added[0] {
		t.Errorf("INBOX rows = %+v, %v", rows, err)
	}

	// A missing mailbox is the upstream's NO.
	_, err = SyncSource(ctx, st, vm, "acct", c, "Nope")
	var ie *imap.Error
	if !errors.As(err, &ie) {
		t.Errorf("missing mailbox: err = %v", err)
	}
}

func TestSyncSourceLarge(t *testing.T) {
	const n = 10000
	m := startMem(t)
	st, vm := openStore(t)
	for range n {
		m.put("INBOX")
	}
	c := m.dial()
	start := time.Now()
	res, err := SyncSource(context.Background(), st, vm, "acct", c, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first sync of %d messages: %v", n, time.Since(start))
	if len(res.Messages) != n || len(res.Added) != n {
		t.Fatalf("%d messages, %d added", len(res.Messages), len(res.Added))
	}
	start = time.Now()
	res, err = SyncSource(context.Background(), st, vm, "acct", c, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second sync: %v", time.Since(start))
	if len(res.Messages) != n || len(res.Added) != 0 || len(res.Removed) != 0 {
		t.Fatalf("%d messages, %d added, %d removed", len(res.Messages), len(res.Added), len(res.Removed))
	}
	for _, s := range m.sent() {
		if got := strings.Count(s, "UID FETCH"); got != 2 {
			t.Errorf("%d UID FETCH commands for two syncs", got)
		}
	}
}
