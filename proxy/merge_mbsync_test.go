package proxy

// mbsync (isync) synchronizing a merged account both ways with a local
// maildir, through the proxy, over two real Dovecots. Skipped when
// Dovecot or mbsync is missing, unless IMAPPROXY_TEST_DOVECOT=1 makes
// them mandatory.

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"imapproxy/internal/dovecot"
)

// mbsyncTwoWayRC is mbsyncrc with a channel that synchronizes every
// folder both ways: new messages, flags and deletions, expunging on both
// sides.
var mbsyncTwoWayRC = strings.Replace(mbsyncrc, "Channel pull\nFar :far:\nNear :near:\nPatterns *\nCreate Near\nSync Pull\n",
	"Channel both\nFar :far:\nNear :near:\nPatterns *\nCreate Both\nExpunge Both\nSync All\n", 1)

// mbsyncSetup writes an mbsync configuration from template (mbsyncrc's
// placeholders) for the merged user alice through p, and returns the
// home directory to run mbsync in, the maildir and the configuration.
func mbsyncSetup(t *testing.T, p *mergeProxy, template string) (dir, maildir, rc string) {
	t.Helper()
	proxyCA, _, err := testPair.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	maildir = filepath.Join(dir, "mail")
	if err := os.Mkdir(maildir, 0o700); err != nil {
		t.Fatal(err)
	}
	_, port := hostPort(t, p.addr)
	rc = filepath.Join(dir, "mbsyncrc")
	// isync 1.4 matches only DNS names: the proxy's certificate is valid
	// for localhost.
	if err := os.WriteFile(rc, []byte(fmt.Sprintf(template, "localhost", port, proxyCA, maildir, maildir)), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, maildir, rc
}

// maildirMessage finds the file of the message with Message-ID id in a
// maildir folder (cur or new).
func maildirMessage(t *testing.T, folder, id string) string {
	t.Helper()
	for _, sub := range []string{"cur", "new"} {
		entries, err := os.ReadDir(filepath.Join(folder, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			p := filepath.Join(folder, sub, e.Name())
			body, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if messageID(body) == id {
				return p
			}
		}
	}
	t.Fatalf("maildir %s has no %s", folder, id)
	return ""
}

// maildirInfo returns the flag letters of a maildir file name.
func maildirInfo(path string) string {
	_, info, _ := strings.Cut(filepath.Base(path), ":2,")
	return info
}

// upstreamTruth reads the folders the test changes from both Dovecots.
func upstreamTruth(t *testing.T, work, home *dovecot.Server) map[string]map[string][]directMessage {
	t.Helper()
	return map[string]map[string][]directMessage{
		"work INBOX":    directState(t, work, "INBOX"),
		"work Reports":  directState(t, work, "Reports"),
		"home INBOX":    directState(t, home, "INBOX"),
		"home Projects": directState(t, home, "Projects"),
	}
}

func TestMergeMbsyncTwoWay(t *testing.T) {
	mbsync := requireClient(t, "mbsync")
	work, home, inboxes := mergeDovecots(t)
	p := startMergeProxyAt(t, mergeDovecotConfig(t, work, home), filepath.Join(t.TempDir(), "state.db"))
	if !strings.Contains(mbsyncTwoWayRC, "Sync All") {
		t.Fatalf("mbsyncrc changed; mbsyncTwoWayRC no longer makes a two-way channel from it")
	}
	dir, maildir, rc := mbsyncSetup(t, p, mbsyncTwoWayRC)
	sync := func(what string) string {
		t.Logf("mbsync, %s", what)
		return string(runClient(t, 2*time.Minute, []string{"HOME=" + dir}, mbsync, "-V", "-c", rc, "-a"))
	}

	// First run: everything is pulled.
	sync("first run")
	got := maildirBodies(t, maildir)
	if len(got["INBOX"]) != len(inboxes) {
		t.Errorf("first run: the unified INBOX has %d messages, want %d", len(got["INBOX"]), len(inboxes))
	}
	if n := len(got["Work/INBOX"]) + len(got["Home/INBOX"]); n != len(inboxes) {
		t.Errorf("first run: Work/INBOX and Home/INBOX hold %d messages, want %d", n, len(inboxes))
	}
	if len(got["Work/Reports"]) != 1 || len(got["Home/Projects"]) != 2 {
		t.Fatalf("first run: Work/Reports %d, Home/Projects %d messages, want 1 and 2", len(got["Work/Reports"]), len(got["Home/Projects"]))
	}

	// Local changes: flag one, delete one, add one.
	projects := filepath.Join(maildir, "Home", "Projects")
	reports := filepath.Join(maildir, "Work", "Reports")
	flagID := messageID(textMessage(300, "merge projects"))
	delID := messageID(textMessage(301, "merge projects"))
	f := maildirMessage(t, projects, flagID)
	info := maildirInfo(f)
	flagged := strings.TrimSuffix(f, info) + sortedLetters(info+"F")
	if !strings.Contains(f, ":2,") {
		flagged = f + ":2,F"
	}
	if err := os.Rename(f, flagged); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(maildirMessage(t, projects, delID)); err != nil {
		t.Fatal(err)
	}
	local := textMessage(400, "local new")
	localFile := filepath.Join(reports, "new", fmt.Sprintf("%d.local400.testhost", time.Now().Unix()))
	if err := os.WriteFile(localFile, []byte(strings.ReplaceAll(string(local), "\r\n", "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	// Remote changes, straight on the Dovecots: flag one, deliver one.
	remoteFlagID := messageID(textMessage(200, "merge reports"))
	dc := dialDovecotClient(t, work, nil)
	if _, err := dc.Select("Reports", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	dm := fetchAll(t, dc)
	if err := dc.Store(imap.UIDSetNum(dm[remoteFlagID].uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	dc.Logout().Wait()
	remote := textMessage(500, "remote new")
	if err := home.Deliver("alice", "Projects", remote); err != nil {
		t.Fatal(err)
	}

	// Second run: local changes pushed, remote ones pulled.
	sync("second run")
	truth := upstreamTruth(t, work, home)
	if c := truth["home Projects"][flagID]; len(c) != 1 || !strings.Contains(c[0].flags, `\Flagged`) {
		t.Errorf("second run: home's Projects has %s as %+v, want it once with \\Flagged", flagID, c)
	}
	if c := truth["home Projects"][delID]; len(c) != 0 {
		t.Errorf("second run: home's Projects still has %s, deleted locally: %+v", delID, c)
	}
	if c := truth["work Reports"][messageID(local)]; len(c) != 1 {
		t.Errorf("second run: work's Reports has the message added locally %d times, want once", len(c))
	}
	if c := truth["home Projects"][messageID(remote)]; len(c) != 1 {
		t.Errorf("second run: home's Projects has the delivered message %d times", len(c))
	}
	if p := maildirMessage(t, reports, remoteFlagID); !strings.Contains(maildirInfo(p), "R") {
		t.Errorf("second run: the flag set on work's Dovecot did not reach the maildir: %s", filepath.Base(p))
	}
	maildirMessage(t, projects, messageID(remote))
	got = maildirBodies(t, maildir)
	if len(got["Home/Projects"]) != 2 || len(got["Work/Reports"]) != 2 {
		t.Errorf("second run: Home/Projects %d, Work/Reports %d messages, want 2 and 2", len(got["Home/Projects"]), len(got["Work/Reports"]))
	}
	if len(got["INBOX"]) != len(inboxes) {
		t.Errorf("second run: the unified INBOX has %d messages, want %d", len(got["INBOX"]), len(inboxes))
	}

	// Third run: nothing to do on either side.
	before := maildirFiles(t, maildir)
	third := sync("third run")
	after := maildirFiles(t, maildir)
	if !slices.Equal(before, after) {
		t.Errorf("the third mbsync run changed the maildir: added %q, removed %q\n%s", difference(after, before), difference(before, after), third)
	}
	again := upstreamTruth(t, work, home)
	for _, k := range slices.Sorted(maps.Keys(truth)) {
		if !sameState(truth[k], again[k]) {
			t.Errorf("the third mbsync run changed %s on the Dovecot", k)
		}
	}
	for box, n := range mbsyncCounts(third) {
		if n[0] != n[1] {
			t.Errorf("third run: box %s near side holds %d messages, far side %d", box, n[0], n[1])
		}
	}
}

// sortedLetters sorts maildir flag letters and drops repeats.
func sortedLetters(s string) string {
	b := []byte(s)
	slices.Sort(b)
	return string(slices.Compact(b))
}

// sameState reports whether two readings of a mailbox hold the same
// messages with the same UIDs, contents, flags and dates.
func sameState(a, b map[string][]directMessage) bool {
	return maps.EqualFunc(a, b, func(x, y []directMessage) bool {
		return slices.EqualFunc(x, y, func(m, n directMessage) bool { return m.uid == n.uid && m.same(n) })
	})
}
