package proxy

// Merge mode against two real Dovecot 2.3 instances (internal/dovecot),
// through the proxy's implicit-TLS front door. Skipped when Dovecot is not
// installed, failing instead when IMAPPROXY_TEST_DOVECOT=1.

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"imapproxy/auth"
	"imapproxy/config"
	"imapproxy/internal/dovecot"
	"imapproxy/merge"
	"imapproxy/store"
)

// mergeDovecotConfig returns a config with an implicit-TLS listener and a
// merge user alice with accounts "work" (prefix Work) on the Dovecot work
// and "home" (prefix Home) on the Dovecot home, both over implicit TLS, a
// unified INBOX and default_account work. No hash: work's Dovecot checks
// alice's password.
func mergeDovecotConfig(t testing.TB, work, home *dovecot.Server) *config.Config {
	t.Helper()
	return mergeConfigFor(upstreamFor(t, "work", work), upstreamFor(t, "home", home))
}

// dovecotUpstream is what a proxy's config needs of a Dovecot: its TLS
// address and a file with its certificate.
type dovecotUpstream struct {
	Addr   string `json:"addr"`
	CAFile string `json:"ca_file"`
}

// upstreamFor writes d's certificate into a file for the config.
func upstreamFor(t testing.TB, name string, d *dovecot.Server) dovecotUpstream {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), name+"-ca.pem")
	if err := os.WriteFile(caFile, d.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return dovecotUpstream{Addr: d.TLSAddr, CAFile: caFile}
}

// mergeConfigFor is mergeDovecotConfig's config: alice merges work's and
// home's alice under the prefixes Work and Home, with a unified INBOX.
func mergeConfigFor(work, home dovecotUpstream) *config.Config {
	cfg := baseConfig(config.TLSImplicit, work.Addr)
	cfg.Routes = nil
	cfg.Upstreams = nil
	for _, u := range []struct {
		name string
		up   dovecotUpstream
	}{{"work", work}, {"home", home}} {
		cfg.Upstreams = append(cfg.Upstreams, config.Upstream{
			Name: u.name, Address: u.up.Addr, TLS: config.TLSImplicit, CAFile: u.up.CAFile,
			ConnectTimeout: config.Duration(10 * time.Second),
			CommandTimeout: config.Duration(20 * time.Second),
		})
	}
	pw := config.Secret{Kind: config.SecretPassthrough}
	cfg.Users = []config.User{{
		Name: "alice", Mode: config.ModeMerge, UnifiedInbox: true, DefaultAccount: "work",
		Accounts: []config.Account{
			{Name: "work", Upstream: "work", Username: "alice", Password: pw, Prefix: "Work"},
			{Name: "home", Upstream: "home", Username: "alice", Password: pw, Prefix: "Home"},
		},
	}}
	return cfg
}

// mergeProxy is a proxy with a merge.Manager over a store at a path the
// test chooses, so that a second one can restart on the same state.
type mergeProxy struct {
	*testProxy
	stopOnce sync.Once
	stopFn   func()
}

// stop shuts the proxy down, then closes its Manager and store.
func (p *mergeProxy) stop() { p.stopOnce.Do(p.stopFn) }

func startMergeProxyAt(t *testing.T, cfg *config.Config, dbPath string) *mergeProxy {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), dbPath)
	if err != nil {
		t.Fatal(err)
	}
	m := merge.NewManager(merge.ManagerOptions{
		Store: st, WatchInterval: time.Second,
		Logger: slog.New(slog.NewTextHandler(&testLogger{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "merge"),
	})
	tp := startProxyWith(t, cfg, func(_ *auth.Options, o *Options) { o.Merge = m })
	p := &mergeProxy{testProxy: tp}
	p.stopFn = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tp.srv.Shutdown(ctx)
		<-tp.done
		m.Close()
		st.Close()
	}
	// Registered after startProxyWith's cleanup, so it runs before it.
	t.Cleanup(p.stop)
	return p
}

// dialMerged logs in to the proxy as alice over TLS with imapclient.
func dialMerged(t *testing.T, addr string, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(addr, &imapclient.Options{
		TLSConfig:             &tls.Config{RootCAs: testPair.CertPool(), ServerName: "127.0.0.1"},
		UnilateralDataHandler: h,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("alice", "alicepw").Wait(); err != nil {
		t.Fatalf("LOGIN through the proxy: %v", err)
	}
	return c
}

// dialDovecotClient logs in to a Dovecot directly with imapclient.
func dialDovecotClient(t *testing.T, d *dovecot.Server, h *imapclient.UnilateralDataHandler) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(d.TLSAddr, &imapclient.Options{TLSConfig: d.TLSConfig(), UnilateralDataHandler: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("alice", "alicepw").Wait(); err != nil {
		t.Fatalf("LOGIN to Dovecot: %v", err)
	}
	return c
}

var messageIDRe = regexp.MustCompile(`(?im)^Message-ID: *(<[^>\r\n]*>)`)

// messageID returns the Message-ID of a raw message.
func messageID(body []byte) string {
	if m := messageIDRe.FindSubmatch(body); m != nil {
		return string(m[1])
	}
	return ""
}

// mergedMessage is one message as FETCHed.
type mergedMessage struct {
	uid   imap.UID
	body  []byte
	flags []imap.Flag
}

// fetchAll returns UID, FLAGS and BODY.PEEK[] of every message of the
// selected mailbox (UID FETCH 1:*), by Message-ID.
func fetchAll(t *testing.T, c *imapclient.Client) map[string]mergedMessage {
	t.Helper()
	out, err := tryFetchAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tryFetchAll is fetchAll returning its error.
func tryFetchAll(c *imapclient.Client) (map[string]mergedMessage, error) {
	sec := &imap.FetchItemBodySection{Peek: true}
	bufs, err := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, Flags: true, BodySection: []*imap.FetchItemBodySection{sec},
	}).Collect()
	if err != nil {
		return nil, fmt.Errorf("UID FETCH 1:* BODY.PEEK[]: %w", err)
	}
	out := make(map[string]mergedMessage)
	for _, b := range bufs {
		body := b.FindBodySection(sec)
		id := messageID(body)
		if _, dup := out[id]; dup || id == "" {
			return nil, fmt.Errorf("FETCH: Message-ID %q missing or repeated", id)
		}
		out[id] = mergedMessage{uid: b.UID, body: body, flags: b.Flags}
	}
	return out, nil
}

// messageUIDs returns the UIDs of msgs, sorted.
func messageUIDs(msgs map[string]mergedMessage) []imap.UID {
	var out []imap.UID
	for _, m := range msgs {
		out = append(out, m.uid)
	}
	slices.Sort(out)
	return out
}

// directFlags returns the flags of the message with Message-ID id in a
// mailbox of a Dovecot, read with a connection of its own.
func directFlags(t *testing.T, d *dovecot.Server, mailbox, id string) []imap.Flag {
	t.Helper()
	c := dialDovecotClient(t, d, nil)
	defer c.Close()
	if _, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs := fetchAll(t, c)
	m, ok := msgs[id]
	if !ok {
		t.Fatalf("Dovecot's %s lacks %s", mailbox, id)
	}
	return m.flags
}

// mergeDovecots starts two Dovecots with distinct mail in their INBOXes
// (work: 6, home: 4, one large each) and a Projects folder on home, and
// returns them with the messages delivered, by Message-ID (with CRLF line
// ends, as Dovecot serves them).
func mergeDovecots(t *testing.T) (work, home *dovecot.Server, inboxes map[string][]byte) {
	t.Helper()
	work = dovecot.StartT(t, dovecot.Options{})
	home = dovecot.StartT(t, dovecot.Options{})
	inboxes = make(map[string][]byte)
	var workMsgs, homeMsgs [][]byte
	for i := range 6 {
		workMsgs = append(workMsgs, textMessage(i, "merge work"))
	}
	for i := range 4 {
		homeMsgs = append(homeMsgs, textMessage(100+i, "merge home"))
	}
	big := []byte(fmt.Sprintf("From: big@example.org\r\nSubject: big\r\nMessage-ID: <big@example.org>\r\n\r\n%s",
		strings.Repeat("0123456789abcdef\xe9 line\r\n", 20_000)))
	workMsgs = append(workMsgs, big)
	for _, m := range append(slices.Clone(workMsgs), homeMsgs...) {
		inboxes[messageID(m)] = crlf(m)
	}
	if err := work.Deliver("alice", "INBOX", workMsgs...); err != nil {
		t.Fatal(err)
	}
	if err := home.Deliver("alice", "INBOX", homeMsgs...); err != nil {
		t.Fatal(err)
	}
	if err := work.Deliver("alice", "Reports", textMessage(200, "merge reports")); err != nil {
		t.Fatal(err)
	}
	if err := home.Deliver("alice", "Projects", textMessage(300, "merge projects"), textMessage(301, "merge projects")); err != nil {
		t.Fatal(err)
	}
	return work, home, inboxes
}

func TestMergeDovecot(t *testing.T) {
	work, home, inboxes := mergeDovecots(t)
	cfg := mergeDovecotConfig(t, work, home)
	dbPath := filepath.Join(t.TempDir(), "state.db")
	p := startMergeProxyAt(t, cfg, dbPath)

	// The front door: LOGIN over TLS gets the merged session.
	raw := dialProxyTLS(t, p.testProxy)
	lines := mustOK(raw, "a", "LOGIN alice alicepw")
	if caps := postLoginCaps(t, lines[len(lines)-1]); !hasCapability(caps, "NAMESPACE") || !hasCapability(caps, "MOVE") {
		t.Errorf("merged capabilities %q", caps)
	}
	mustOK(raw, "z", "LOGOUT")

	c := dialMerged(t, p.addr, nil)
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range list {
		names = append(names, l.Mailbox)
		if l.Delim != '/' {
			t.Errorf("LIST %s: delimiter %q", l.Mailbox, l.Delim)
		}
	}
	for _, prefix := range []string{"Work", "Home"} {
		for _, f := range []string{"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"} {
			if !slices.Contains(names, prefix+"/"+f) {
				t.Errorf("LIST lacks %s/%s: %q", prefix, f, names)
			}
		}
	}
	for _, want := range []string{"INBOX", "Work/Reports", "Home/Projects"} {
		if !slices.Contains(names, want) {
			t.Errorf("LIST lacks %s: %q", want, names)
		}
	}
	if slices.Contains(names, "Home/Reports") || slices.Contains(names, "Work/Projects") {
		t.Errorf("LIST mixes the accounts' trees: %q", names)
	}

	// The unified INBOX: the sum, byte-identical bodies.
	sd, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if int(sd.NumMessages) != len(inboxes) {
		t.Fatalf("unified INBOX has %d messages, want %d (6+1 work, 4 home)", sd.NumMessages, len(inboxes))
	}
	msgs := fetchAll(t, c)
	if len(msgs) != len(inboxes) {
		t.Fatalf("UID FETCH 1:* returned %d messages, want %d", len(msgs), len(inboxes))
	}
	for id, want := range inboxes {
		got, ok := msgs[id]
		if !ok {
			t.Errorf("unified INBOX lacks %s", id)
		} else if sha256.Sum256(got.body) != sha256.Sum256(want) {
			t.Errorf("%s: %d bytes through the proxy, %d delivered, or they differ", id, len(got.body), len(want))
		}
	}

	// STORE through the proxy reaches the upstream.
	homeID := messageID(textMessage(101, "merge home"))
	sb, err := c.Store(imap.UIDSetNum(msgs[homeID].uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect()
	if err != nil || len(sb) != 1 || !slices.Contains(sb[0].Flags, imap.FlagFlagged) {
		t.Errorf("STORE +FLAGS (\\Flagged): %+v %v", sb, err)
	}
	if fs := directFlags(t, home, "INBOX", homeID); !slices.Contains(fs, imap.FlagFlagged) {
		t.Errorf("home's Dovecot has flags %v after STORE +FLAGS (\\Flagged) through the proxy", fs)
	}

	// A flag set on the upstream directly reaches an IDLE'ing client.
	flagged := make(chan imap.UID, 16)
	idler := dialMerged(t, p.addr, &imapclient.UnilateralDataHandler{
		Fetch: func(msg *imapclient.FetchMessageData) {
			b, err := msg.Collect()
			if err == nil && slices.Contains(b.Flags, imap.FlagAnswered) {
				flagged <- b.UID // 0 unless the server sends the UID
			}
		},
	})
	if _, err := idler.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := idler.Idle()
	if err != nil {
		t.Fatal(err)
	}
	workID := messageID(textMessage(2, "merge work"))
	direct := dialDovecotClient(t, work, nil)
	if _, err := direct.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	dm := fetchAll(t, direct)
	if err := direct.Store(imap.UIDSetNum(dm[workID].uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-flagged:
	case <-time.After(5 * time.Second):
		t.Errorf("no FETCH FLAGS with \\Answered within 5s of the flag set on work's Dovecot")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := fetchAll(t, idler)[workID]; !slices.Contains(got.flags, imap.FlagAnswered) {
		t.Errorf("after IDLE, %s has flags %v", workID, got.flags)
	}
	idler.Logout().Wait()

	// UIDs and UIDVALIDITY survive a restart on the same state.
	uidsOf := func(c *imapclient.Client, mailbox string) (uint32, map[string]imap.UID) {
		t.Helper()
		sd, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatalf("EXAMINE %s: %v", mailbox, err)
		}
		out := make(map[string]imap.UID)
		for id, m := range fetchAll(t, c) {
			out[id] = m.uid
		}
		return sd.UIDValidity, out
	}
	before := map[string]map[string]imap.UID{}
	validity := map[string]uint32{}
	for _, mb := range []string{"INBOX", "Home/INBOX", "Work/Reports"} {
		validity[mb], before[mb] = uidsOf(c, mb)
	}
	c.Logout().Wait()
	p.stop()
	p2 := startMergeProxyAt(t, cfg, dbPath)
	var expunges atomic.Int32
	c2 := dialMerged(t, p2.addr, &imapclient.UnilateralDataHandler{Expunge: func(uint32) { expunges.Add(1) }})
	for _, mb := range []string{"INBOX", "Home/INBOX", "Work/Reports"} {
		v, after := uidsOf(c2, mb)
		if v != validity[mb] || len(after) == 0 || !mapsEqual(after, before[mb]) {
			t.Errorf("%s after a restart: UIDVALIDITY %d UIDs %v; before: %d %v", mb, v, after, validity[mb], before[mb])
		}
	}

	// An upstream UIDVALIDITY change: new UIDs, never reused ones.
	testMergeUIDValidityChange(t, c2, home, &expunges, func() *imapclient.Client {
		c2.Logout().Wait()
		p2.stop()
		p3 := startMergeProxyAt(t, cfg, dbPath)
		return dialMerged(t, p3.addr, nil)
	})
}

func mapsEqual(a, b map[string]imap.UID) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// testMergeUIDValidityChange deletes and recreates Projects on home's
// Dovecot (doveadm) while c has Home/Projects selected, delivers again,
// and checks that c sees the old messages expunged and the new ones with
// higher UIDs; and that a proxy restarted on the same state (restart)
// agrees.
func testMergeUIDValidityChange(t *testing.T, c *imapclient.Client, home *dovecot.Server, expunges *atomic.Int32, restart func() *imapclient.Client) {
	sd, err := c.Select("Home/Projects", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	old := fetchAll(t, c)
	if len(old) != 2 {
		t.Fatalf("Home/Projects has %d messages, want 2", len(old))
	}
	oldUIDs := messageUIDs(old)
	maxOld := oldUIDs[len(oldUIDs)-1]
	expunges.Store(0)
	if _, err := home.Doveadm("mailbox", "delete", "-u", "alice", "Projects"); err != nil {
		t.Fatal(err)
	}
	if _, err := home.Doveadm("mailbox", "create", "-u", "alice", "Projects"); err != nil {
		t.Fatal(err)
	}
	fresh := [][]byte{textMessage(300, "merge projects"), textMessage(302, "merge projects"), textMessage(303, "merge projects")}
	if err := home.Deliver("alice", "Projects", fresh...); err != nil {
		t.Fatal(err)
	}
	// A new connection to the upstream sees the recreated mailbox.
	direct := dialDovecotClient(t, home, nil)
	dsd, err := direct.Select("Projects", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if dsd.NumMessages != 3 {
		t.Fatalf("Dovecot's recreated Projects has %d messages", dsd.NumMessages)
	}
	direct.Logout().Wait()

	// checkFresh checks the new messages' UIDs and bodies.
	checkFresh := func(what string, got map[string]mergedMessage) {
		t.Helper()
		for _, m := range fresh {
			id := messageID(m)
			g, ok := got[id]
			if !ok {
				t.Errorf("%s: new message %s missing", what, id)
				continue
			}
			if g.uid <= maxOld {
				t.Errorf("%s: new message %s got UID %d; the old UIDs were %v", what, id, g.uid, oldUIDs)
			}
			if !slices.Equal(g.body, crlf(m)) {
				t.Errorf("%s: new message %s: body differs", what, id)
			}
		}
	}
	staleID := messageID(textMessage(301, "merge projects"))

	// The session that had the mailbox selected.
	var got map[string]mergedMessage
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := c.Noop().Wait(); err != nil {
			t.Fatalf("NOOP: %v", err)
		}
		// Until the proxy has re-synced, the upstream may answer NO
		// ("Mailbox was deleted under us"); that passes.
		prev := err
		got, err = tryFetchAll(c)
		if err != nil && (prev == nil || prev.Error() != err.Error()) {
			t.Logf("UID FETCH during the change: %v", err)
		} else if _, stale := got[staleID]; len(got) == len(fresh) && !stale {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err == nil {
		if _, stale := got[staleID]; len(got) != len(fresh) || stale {
			t.Errorf("Home/Projects through the proxy 15s after the upstream was recreated: %d messages %v", len(got), messageUIDs(got))
		}
		checkFresh("selected session", got)
		if n := expunges.Load(); n < int32(len(old)) {
			t.Errorf("the client saw %d EXPUNGEs, want %d (the old messages)", n, len(old))
		}
	}
	liveErr := err

	// A proxy restarted on the same state: new UIDs, never the old ones.
	c3 := restart()
	sd3, err := c3.Select("Home/Projects", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	after := fetchAll(t, c3)
	if len(after) != len(fresh) {
		t.Errorf("after a restart, Home/Projects has %d messages, want %d", len(after), len(fresh))
	}
	checkFresh("after a restart", after)
	if sd3.UIDValidity != sd.UIDValidity {
		t.Errorf("the merged UIDVALIDITY changed from %d to %d; new UIDs were enough", sd.UIDValidity, sd3.UIDValidity)
	}
	if liveErr != nil {
		t.Errorf("Home/Projects through the proxy after the upstream was recreated: %v", liveErr)
	}

}
