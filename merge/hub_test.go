package merge

import (
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

	"imapproxy/store"
	"imapproxy/upstream"
)

// startSpecialMem starts a memory upstream like startMem's, offering
// SPECIAL-USE and LIST-EXTENDED, with an INBOX and the given folders
// (name → special use, "" for none).
func startSpecialMem(t *testing.T, folders map[string]imap.MailboxAttr) *memUpstream {
	t.Helper()
	return startSpecialMemAt(t, "127.0.0.1:0", folders)
}

// startSpecialMemAt is startSpecialMem listening on addr.
func startSpecialMemAt(t *testing.T, addr string, folders map[string]imap.MailboxAttr) *memUpstream {
	t.Helper()
	m := &memUpstream{t: t}
	mem := imapmemserver.New()
	m.user = imapmemserver.NewUser(memUser, memPassword)
	if err := m.user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	for name, use := range folders {
		var o *imap.CreateOptions
		if use != "" {
			o = &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{use}}
		}
		if err := m.user.Create(name, o); err != nil {
			t.Fatal(err)
		}
	}
	mem.AddUser(m.user)
	m.serve(mem, addr, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapSpecialUse: {}, imap.CapListExtended: {}},
		func(s imapserver.Session) imapserver.Session { return &specialSession{Session: s, folders: folders} }, nil)
	return m
}

// specialSession adds the special-use attributes imapmemserver does not
// keep to LIST "" "*", which lists INBOX and the folders made at start.
type specialSession struct {
	imapserver.Session
	folders map[string]imap.MailboxAttr
}

func (s *specialSession) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) != 1 || patterns[0] != "*" {
		return s.Session.List(w, ref, patterns, options)
	}
	names := []string{"INBOX"}
	for name := range s.folders {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		d := &imap.ListData{Mailbox: name, Delim: '/'}
		if use := s.folders[name]; use != "" && options.ReturnSpecialUse {
			d.Attrs = append(d.Attrs, use)
		}
		if err := w.WriteList(d); err != nil {
			return err
		}
	}
	return nil
}

// closedAddr returns an address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// hubEnv is two upstreams, a store and a spec over them.
type hubEnv struct {
	t          *testing.T
	work, home *memUpstream
	st         store.Store
	spec       UserSpec
}

// newHubEnv starts "work" (with Projects and a \Sent "Sent") and "home"
// (with Lists and a \Sent "Sent Items"), mounted at workPrefix and
// "Home", with a unified INBOX and Sent.
func newHubEnv(t *testing.T, workPrefix string) *hubEnv {
	t.Helper()
	e := &hubEnv{t: t}
	e.work = startSpecialMem(t, map[string]imap.MailboxAttr{"Projects": "", "Sent": imap.MailboxAttrSent})
	e.home = startSpecialMem(t, map[string]imap.MailboxAttr{"Lists": "", "Sent Items": imap.MailboxAttrSent})
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.st = st
	e.spec = UserSpec{
		User: "alice",
		Accounts: []AccountSpec{
			{Name: "work", Prefix: workPrefix, Options: e.work.account()},
			{Name: "home", Prefix: "Home", Options: e.home.account()},
		},
		UnifiedInbox:      true,
		UnifiedSpecialUse: []string{"sent"},
		DefaultAccount:    "work",
	}
	return e
}

// manager returns a Manager on the env's store, closed when the test ends.
func (e *hubEnv) manager(linger time.Duration) *Manager {
	m := NewManager(ManagerOptions{
		Store:         e.st,
		Logger:        slog.New(slog.NewTextHandler(tLogWriter{e.t}, nil)),
		WatchInterval: time.Second,
		Linger:        linger,
		WatchLinger:   100 * time.Millisecond,
	})
	e.t.Cleanup(m.Close)
	return m
}

// attach attaches a session, detached when the test ends.
func (e *hubEnv) attach(m *Manager) (*Hub, *Subscriber) {
	e.t.Helper()
	h, sub, err := m.Attach(context.Background(), e.spec)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { h.Detach(sub) })
	return h, sub
}

func folderNames(fs []Folder) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}

func findFolder(fs []Folder, name string) (Folder, bool) {
	for _, f := range fs {
		if f.Name == name {
			return f, true
		}
	}
	return Folder{}, false
}

func hasAttr(f Folder, a imap.MailboxAttr) bool {
	for _, b := range f.Attrs {
		if strings.EqualFold(string(a), string(b)) {
			return true
		}
	}
	return false
}

func TestHubList(t *testing.T) {
	for _, tc := range []struct {
		name       string
		workPrefix string
		unified    bool
		want       []string
	}{
		{"prefixed", "Work", true, []string{"Home", "Home/INBOX", "Home/Lists", "Home/Sent Items", "INBOX", "Sent",
			"Work", "Work/INBOX", "Work/Projects", "Work/Sent"}},
		// The primary account's Sent is reached through the unified one.
		{"primary", "", true, []string{"Home", "Home/INBOX", "Home/Lists", "Home/Sent Items", "INBOX", "Projects", "Sent"}},
		// Nothing unified: INBOX and Sent are the primary account's.
		{"separate", "", false, []string{"Home", "Home/INBOX", "Home/Lists", "Home/Sent Items", "INBOX", "Projects", "Sent"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newHubEnv(t, tc.workPrefix)
			if !tc.unified {
				e.spec.UnifiedInbox, e.spec.UnifiedSpecialUse = false, nil
			}
			h, _ := e.attach(e.manager(time.Minute))
			ctx := context.Background()
			fs, _, err := h.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := folderNames(fs); !slices.Equal(got, tc.want) {
				t.Fatalf("List = %q, want %q", got, tc.want)
			}
			home, _ := findFolder(fs, "Home")
			if !home.NoSelect || !hasAttr(home, imap.MailboxAttrNoSelect) || !hasAttr(home, imap.MailboxAttrHasChildren) || home.Account != "home" {
				t.Errorf("container: %+v", home)
			}
			sent, _ := findFolder(fs, "Sent")
			inbox, _ := findFolder(fs, "INBOX")
			homeSent, _ := findFolder(fs, "Home/Sent Items")
			tree, err := h.Tree(ctx)
			if err != nil {
				t.Fatal(err)
			}
			target, err := tree.Resolve("INBOX")
			if err != nil {
				t.Fatal(err)
			}
			if !tc.unified {
				if sent.Unified || sent.Account != "work" || !hasAttr(sent, imap.MailboxAttrSent) ||
					inbox.Unified || inbox.Account != "work" || !hasAttr(homeSent, imap.MailboxAttrSent) {
					t.Errorf("Sent %+v, INBOX %+v, Home/Sent Items %+v", sent, inbox, homeSent)
				}
				if len(target.Sources) != 1 || target.Sources[0].Account != "work" {
					t.Errorf("Resolve(INBOX) = %+v", target)
				}
				return
			}
			if !sent.Unified || sent.Use != `\Sent` || !hasAttr(sent, imap.MailboxAttrSent) {
				t.Errorf("unified Sent: %+v", sent)
			}
			if hasAttr(homeSent, imap.MailboxAttrSent) || homeSent.Account != "home" {
				t.Errorf("Home/Sent Items keeps the unified use: %+v", homeSent)
			}
			if !inbox.Unified {
				t.Errorf("INBOX: %+v", inbox)
			}
			if len(target.Sources) != 2 || target.Sources[0].Account != "work" || target.Sources[1].Account != "home" {
				t.Errorf("Resolve(INBOX) = %+v", target)
			}
		})
	}
}

// appendMsg APPENDs a message from another client of the upstream.
func appendMsg(m *memUpstream, mailbox string, flags ...imap.Flag) {
	m.t.Helper()
	m.admin(mailbox, func(ic *imapclient.Client) error {
		const msg = "Subject: appended\r\n\r\nhi\r\n"
		cmd := ic.Append(mailbox, int64(len(msg)), &imap.AppendOptions{Flags: flags})
		if _, err := cmd.Write([]byte(msg)); err != nil {
			return err
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		_, err := cmd.Wait()
		return err
	})
}

// waitUpdate collects sub's updates until ok says that together (as
// collapse merges them) they are complete, and returns them merged.
func waitUpdate(t *testing.T, sub *Subscriber, what string, ok func(Update) bool) Update {
	t.Helper()
	var got []Update
	deadline := time.After(5 * time.Second)
	for {
		select {
		case <-sub.Updates():
			got = append(got, sub.Take()...)
			if len(got) > 0 && ok(collapse(got)) {
				return collapse(got)
			}
		case <-deadline:
			t.Fatalf("%s: updates %+v", what, got)
		}
	}
}

func vuidsOfView(ms []ViewMessage) []uint32 {
	var out []uint32
	for _, m := range ms {
		out = append(out, m.VUID)
	}
	return out
}

func TestHubSelectAndUpdates(t *testing.T) {
	e := newHubEnv(t, "Work")
	e.work.put("INBOX", imap.FlagFlagged)
	e.work.put("INBOX", "$Work")
	e.home.put("INBOX", imap.FlagSeen)
	m := e.manager(time.Minute)
	h, sub1 := e.attach(m)
	ctx := context.Background()

	v1, err := h.Select(ctx, sub1, "inbox")
	if err != nil {
		t.Fatal(err)
	}
	if len(v1.Messages) != 3 || v1.VMailbox.Name != "INBOX" || v1.VMailbox.UIDValidity == 0 {
		t.Fatalf("view %+v", v1)
	}
	for i, msg := range v1.Messages {
		if i > 0 && msg.VUID <= v1.Messages[i-1].VUID {
			t.Errorf("vuids not increasing: %v", vuidsOfView(v1.Messages))
		}
	}
	accounts := map[string]int{}
	for _, msg := range v1.Messages {
		accounts[msg.Account]++
	}
	if accounts["work"] != 2 || accounts["home"] != 1 {
		t.Errorf("accounts %v", accounts)
	}
	if !slices.Contains(v1.Messages[0].Flags, imap.FlagFlagged) && !slices.Contains(v1.Messages[1].Flags, imap.FlagFlagged) {
		t.Errorf("flags lost: %+v", v1.Messages)
	}
	for _, f := range []imap.Flag{imap.FlagSeen, imap.FlagFlagged, "$Work"} {
		if !slices.ContainsFunc(v1.Flags, func(g imap.Flag) bool { return strings.EqualFold(string(f), string(g)) }) {
			t.Errorf("FLAGS %v lacks %s", v1.Flags, f)
		}
	}
	if !slices.Contains(v1.PermanentFlags, imap.FlagWildcard) {
		t.Errorf("PERMANENTFLAGS %v", v1.PermanentFlags)
	}

	// A second session shares the hub and the watchers.
	h2, sub2 := e.attach(m)
	if h2 != h {
		t.Fatal("second Attach made another hub")
	}
	v2, err := h.Select(ctx, sub2, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(vuidsOfView(v2.Messages), vuidsOfView(v1.Messages)) {
		t.Errorf("second view %v, first %v", vuidsOfView(v2.Messages), vuidsOfView(v1.Messages))
	}
	if n := h.watchStarts.Load(); n != 2 {
		t.Errorf("%d watchers started, want one per source (2)", n)
	}
	// And each upstream sees one connection in IDLE.
	for _, up := range []*memUpstream{e.work, e.home} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			idling := 0
			for _, sent := range up.sent() {
				if strings.Contains(sent, "IDLE\r\n") {
					idling++
				}
			}
			if idling == 1 {
				break
			}
			if idling > 1 || time.Now().After(deadline) {
				t.Fatalf("%d connections sent IDLE", idling)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	last := v1.Messages[2].VUID

	// An APPEND by another client of one upstream.
	appendMsg(e.home, "INBOX")
	var added ViewMessage
	for _, sub := range []*Subscriber{sub1, sub2} {
		u := waitUpdate(t, sub, "append", func(u Update) bool { return len(u.Added) > 0 })
		a := u.Added
		if len(a) != 1 || a[0].VUID <= last || a[0].Account != "home" || u.Mailbox != "INBOX" || len(u.Removed) > 0 {
			t.Fatalf("append: %+v", u)
		}
		added = a[0]
	}

	// A flag change.
	e.home.admin("INBOX", func(ic *imapclient.Client) error {
		st := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagAnswered}, Silent: true}
		return ic.Store(imap.UIDSetNum(added.UID), st, nil).Close()
	})
	for _, sub := range []*Subscriber{sub1, sub2} {
		u := waitUpdate(t, sub, "flags", func(u Update) bool { return len(u.Flags) > 0 })
		f := u.Flags
		if len(f) != 1 || f[0].VUID != added.VUID || !slices.Contains(f[0].Flags, imap.FlagAnswered) {
			t.Fatalf("flags: %+v", u)
		}
	}

	// An expunge.
	e.home.expunge("INBOX", added.UID)
	for _, sub := range []*Subscriber{sub1, sub2} {
		u := waitUpdate(t, sub, "expunge", func(u Update) bool { return len(u.Removed) > 0 })
		if r := u.Removed; len(r) != 1 || r[0] != added.VUID || len(u.Added) > 0 {
			t.Fatalf("expunge: %+v", u)
		}
	}
	reply := make(chan int, 1)
	if n, err := call(ctx, h, watcherCountEvent{reply}, reply); err != nil || n != 2 {
		t.Errorf("%d watchers running (%v), want 2", n, err)
	}

	// Unselect by both stops the watchers after the watch linger.
	h.Unselect(sub1)
	h.Unselect(sub2)
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := call(ctx, h, watcherCountEvent{reply}, reply)
		if err == nil && n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d watchers running after unselect (%v)", n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHubUnifiedSent(t *testing.T) {
	e := newHubEnv(t, "Work")
	e.work.put("Sent")
	e.home.put("Sent Items")
	e.home.put("Sent Items")
	h, sub := e.attach(e.manager(time.Minute))
	v, err := h.Select(context.Background(), sub, "Sent")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, msg := range v.Messages {
		got[msg.Account+"/"+msg.Mailbox]++
	}
	if len(v.Messages) != 3 || got["work/Sent"] != 1 || got["home/Sent Items"] != 2 {
		t.Errorf("unified Sent: %+v", v.Messages)
	}
	if _, err := h.Select(context.Background(), sub, "Home"); !errors.Is(err, ErrNotSelectable) {
		t.Errorf("select of a container: %v", err)
	}
	_, err = h.Select(context.Background(), sub, "Work/Nope")
	if _, ok := errors.AsType[*imap.Error](err); !ok || errors.Is(err, ErrUnavailable) {
		t.Errorf("select of a missing folder: %v", err)
	}
}

func TestHubRestartKeepsVUIDs(t *testing.T) {
	e := newHubEnv(t, "Work")
	e.work.put("INBOX")
	e.home.put("INBOX")
	ctx := context.Background()
	m1 := e.manager(time.Minute)
	h1, s1 := e.attach(m1)
	v1, err := h1.Select(ctx, s1, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	m1.Close()
	if err := s1.Err(); err == nil {
		t.Error("session not told that the hub closed")
	}
	if _, _, err := m1.Attach(ctx, e.spec); err == nil {
		t.Error("Attach after Close")
	}

	e.work.put("INBOX")
	h2, s2 := e.attach(e.manager(time.Minute))
	v2, err := h2.Select(ctx, s2, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if v2.VMailbox.UIDValidity != v1.VMailbox.UIDValidity || len(v2.Messages) != 3 ||
		!slices.Equal(vuidsOfView(v2.Messages[:2]), vuidsOfView(v1.Messages)) || v2.Messages[2].VUID <= v1.Messages[1].VUID {
		t.Errorf("before %+v, after %+v", v1, v2)
	}
}

func TestHubUnreachableAccount(t *testing.T) {
	e := newHubEnv(t, "Work")
	e.spec.Accounts[1].Options = upstream.AccountOptions{
		Options:     upstream.Options{Name: "home", Address: closedAddr(t), TLS: upstream.TLSNone, CommandTimeout: 5 * time.Second},
		Credentials: e.home.account().Credentials,
	}
	e.work.put("INBOX")
	h, sub := e.attach(e.manager(time.Minute))
	ctx := context.Background()
	fs, _, err := h.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Home stays mounted, as an empty container.
	want := []string{"Home", "INBOX", "Sent", "Work", "Work/INBOX", "Work/Projects", "Work/Sent"}
	if got := folderNames(fs); !slices.Equal(got, want) {
		t.Errorf("List = %q, want %q", got, want)
	}
	if _, err := h.Select(ctx, sub, "Home/INBOX"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("select Home/INBOX: %v", err)
	}
	for _, name := range []string{"Work/INBOX", "INBOX"} {
		v, err := h.Select(ctx, sub, name)
		if err != nil {
			t.Fatalf("select %s: %v", name, err)
		}
		if len(v.Messages) != 1 || v.Messages[0].Account != "work" {
			t.Errorf("select %s: %+v", name, v.Messages)
		}
	}
}

// TestHubUnreachableAtStart: an account down when a hub starts shows the
// folders an earlier hub listed (saved in the store), marked down, with
// SELECT answering unavailable; the reachable account is unaffected.
func TestHubUnreachableAtStart(t *testing.T) {
	e := newHubEnv(t, "Work")
	e.work.put("INBOX")
	ctx := context.Background()
	m1 := e.manager(time.Minute)
	h1, _ := e.attach(m1)
	before, _, err := h1.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m1.Close()

	e.spec.Accounts[1].Options.Address = closedAddr(t)
	h2, sub := e.attach(e.manager(time.Minute))
	after, down, err := h2.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(folderNames(after), folderNames(before)) || !slices.Equal(down, []string{"home"}) {
		t.Errorf("List with home down = %q, down %q; want %q, down [home]", folderNames(after), down, folderNames(before))
	}
	if !slices.ContainsFunc(folderNames(after), func(n string) bool { return strings.HasPrefix(n, "Home/") }) {
		t.Errorf("no folder of home listed: %q", folderNames(after))
	}
	if _, err := h2.Select(ctx, sub, "Home/INBOX"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("select Home/INBOX: %v", err)
	}
	if v, err := h2.Select(ctx, sub, "Work/INBOX"); err != nil || len(v.Messages) != 1 {
		t.Errorf("select Work/INBOX: %+v, %v", v, err)
	}
}

func TestHubAccountComesBack(t *testing.T) {
	e := newHubEnv(t, "Work")
	addr := closedAddr(t)
	e.spec.Accounts[1].Options.Address = addr
	e.work.put("INBOX")
	m := e.manager(time.Minute)
	h, sub1 := e.attach(m)
	ctx := context.Background()
	v1, err := h.Select(ctx, sub1, "INBOX")
	if err != nil || len(v1.Messages) != 1 {
		t.Fatalf("select without home: %+v, %v", v1, err)
	}

	home := startSpecialMemAt(t, addr, nil)
	home.put("INBOX")
	deadline := time.Now().Add(10 * time.Second)
	for {
		fs, _, err := h.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := findFolder(fs, "Home/INBOX"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("home not back: %q", folderNames(fs))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The failed source is retried: the session that has the mailbox
	// selected gets home's messages as new ones, and a new selection
	// has them.
	u := waitUpdate(t, sub1, "home back", func(u Update) bool { return len(u.Added) > 0 })
	_, sub2 := e.attach(m)
	v2, err := h.Select(ctx, sub2, "INBOX")
	if err != nil || len(v2.Messages) != 2 || v2.Messages[1].Account != "home" {
		t.Fatalf("select with home: %+v, %v", v2, err)
	}
	if len(u.Added) != 1 || u.Added[0].VUID != v2.Messages[1].VUID || u.Added[0].VUID <= v1.Messages[0].VUID {
		t.Errorf("home back: %+v", u)
	}
}

func TestHubLinger(t *testing.T) {
	e := newHubEnv(t, "Work")
	m := e.manager(100 * time.Millisecond)
	ctx := context.Background()
	h, sub, err := m.Attach(ctx, e.spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Select(ctx, sub, "INBOX"); err != nil {
		t.Fatal(err)
	}
	h.Detach(sub)
	select {
	case <-h.done:
	case <-time.After(5 * time.Second):
		t.Fatal("hub still running after the linger")
	}
	m.mu.Lock()
	n := len(m.hubs)
	m.mu.Unlock()
	if n != 0 {
		t.Errorf("%d hubs left", n)
	}
	if err := sub.Err(); err != nil {
		t.Errorf("detached session told %v", err)
	}

	// A new session gets a new hub.
	h2, sub2, err := m.Attach(ctx, e.spec)
	if err != nil {
		t.Fatal(err)
	}
	if h2 == h {
		t.Error("stopped hub reused")
	}
	h2.Detach(sub2)
}

func TestCollapse(t *testing.T) {
	var us []Update
	for i := uint32(1); i <= 40; i++ {
		us = append(us, Update{Mailbox: "INBOX", Added: []ViewMessage{{VUID: i}}})
	}
	us = append(us, Update{Mailbox: "INBOX", Removed: []uint32{3, 100}, Flags: []ViewMessage{{VUID: 5, Flags: []imap.Flag{imap.FlagSeen}}, {VUID: 99}}})
	c := collapse(us)
	if len(c.Added) != 39 || !slices.Equal(c.Removed, []uint32{100}) || len(c.Flags) != 1 || c.Flags[0].VUID != 99 {
		t.Fatalf("collapse: %+v", c)
	}
	if c.Added[3].VUID != 5 || !slices.Equal(c.Added[3].Flags, []imap.Flag{imap.FlagSeen}) {
		t.Errorf("flags of an added message: %+v", c.Added[3])
	}
}

func TestSubscriberBounded(t *testing.T) {
	sub := newSubscriber(nil)
	for i := uint32(1); i <= 3*maxPendingUpdates; i++ {
		sub.push(Update{Mailbox: "INBOX", Added: []ViewMessage{{VUID: i}}})
	}
	// Already announced vuids are left out.
	sub.push(Update{Mailbox: "INBOX", Added: []ViewMessage{{VUID: 2}}})
	us := sub.Take()
	if len(us) > maxPendingUpdates {
		t.Fatalf("%d updates pending", len(us))
	}
	var all []uint32
	for _, u := range us {
		all = append(all, vuidsOfView(u.Added)...)
	}
	if len(all) != 3*maxPendingUpdates || !slices.IsSorted(all) {
		t.Errorf("added %v", all)
	}
	if len(sub.Take()) != 0 {
		t.Error("Take did not clear")
	}
}

func TestViewFlags(t *testing.T) {
	perms := [][]imap.Flag{
		{imap.FlagSeen, imap.FlagFlagged, imap.FlagWildcard},
		{imap.FlagSeen, imap.FlagDeleted, "$Label"},
	}
	if got := permanentFlags(perms); !slices.Equal(got, []imap.Flag{imap.FlagSeen, "$Label"}) {
		t.Errorf("PERMANENTFLAGS %v", got)
	}
	msgs := []ViewMessage{{Flags: []imap.Flag{"$Other", `\Recent`}}}
	got := mailboxFlags(msgs, perms)
	for _, f := range []imap.Flag{imap.FlagDraft, "$Label", "$Other"} {
		if !slices.Contains(got, f) {
			t.Errorf("FLAGS %v lack %s", got, f)
		}
	}
	if slices.Contains(got, imap.FlagWildcard) || slices.Contains(got, `\Recent`) {
		t.Errorf("FLAGS %v", got)
	}
	if !sameFlags([]imap.Flag{"a", `\Seen`}, []imap.Flag{`\seen`, "A", "a"}) || sameFlags([]imap.Flag{"a"}, nil) {
		t.Error("sameFlags")
	}
}

// TestHubReselectWatched: selecting a mailbox again whose watchers are
// idling (the same session going back to it, within the watch linger)
// runs no sync; the watchers still report changes.
func TestHubReselectWatched(t *testing.T) {
	e := newHubEnv(t, "Work")
	e.work.put("INBOX")
	e.home.put("INBOX")
	m := e.manager(time.Minute)
	h, sub := e.attach(m)
	ctx := context.Background()
	if _, err := h.Select(ctx, sub, "INBOX"); err != nil {
		t.Fatal(err)
	}
	// Wait until the watchers idle and their first syncs are done.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := h.syncStarts.Load()
		time.Sleep(200 * time.Millisecond)
		if n >= 4 && h.syncStarts.Load() == n {
			break // a sync per source, and one per watcher once ready
		}
		if time.Now().After(deadline) {
			t.Fatalf("syncs never settled: %d", h.syncStarts.Load())
		}
	}
	before := h.syncStarts.Load()
	h.Unselect(sub)
	v, err := h.Select(ctx, sub, "INBOX")
	if err != nil || len(v.Messages) != 2 {
		t.Fatalf("select again: %v %v", v, err)
	}
	if n := h.syncStarts.Load(); n != before {
		t.Errorf("select of a watched mailbox ran %d syncs", n-before)
	}
	e.home.put("INBOX")
	u := waitUpdate(t, sub, "new message", func(u Update) bool { return len(u.Added) > 0 })
	if len(u.Added) != 1 || u.Added[0].Account != "home" {
		t.Errorf("update %+v", u)
	}
}

// TestSessionStatusFromHub: STATUS of a mailbox whose sources the hub
// holds current (selected, watchers idling, nothing changed) is counted
// without listing the upstreams again, and agrees with a fresh listing.
func TestSessionStatusFromHub(t *testing.T) {
	e := newSessEnv(t)
	_, c := e.serve(nil)
	sd, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	listings := func() int {
		n := 0
		for _, m := range []*memUpstream{e.work, e.home} {
			for _, s := range m.sent() {
				n += strings.Count(s, "FETCH 1:* (UID FLAGS)")
			}
		}
		return n
	}
	// The watchers' first syncs (OnReady) settle.
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := listings()
		time.Sleep(300 * time.Millisecond)
		if n >= 4 && listings() == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("listings never settled: %d", listings())
		}
	}
	before := listings()
	opts := &imap.StatusOptions{NumMessages: true, NumUnseen: true, NumDeleted: true}
	st, err := c.Status("INBOX", opts).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if n := listings(); n != before {
		t.Errorf("STATUS of a current mailbox listed the upstreams %d times", n-before)
	}
	if *st.NumMessages != sd.NumMessages {
		t.Errorf("STATUS MESSAGES %d, SELECT EXISTS %d", *st.NumMessages, sd.NumMessages)
	}
	// Against a listing: the same counts for a mailbox the hub does not hold.
	fresh, err := c.Status("Work/INBOX", opts).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if listings() == before {
		t.Error("STATUS of a mailbox the hub does not hold listed nothing")
	}
	home, err := c.Status("Home/INBOX", opts).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sum := *fresh.NumMessages + *home.NumMessages; sum != *st.NumMessages {
		t.Errorf("INBOX MESSAGES %d, accounts' %d", *st.NumMessages, sum)
	}
	if sum := *fresh.NumUnseen + *home.NumUnseen; sum != *st.NumUnseen {
		t.Errorf("INBOX UNSEEN %d, accounts' %d", *st.NumUnseen, sum)
	}
	if sum := *fresh.NumDeleted + *home.NumDeleted; sum != *st.NumDeleted {
		t.Errorf("INBOX DELETED %d, accounts' %d", *st.NumDeleted, sum)
	}
}
