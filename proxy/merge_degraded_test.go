package proxy

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// startStoppableMem runs an imapmemserver with user alice/alicepw that
// can be taken down and brought back at the same address with its mail.
func startStoppableMem(t *testing.T) (*testIMAPServer, *imapmemserver.User) {
	t.Helper()
	mem := imapmemserver.New()
	alice := imapmemserver.NewUser("alice", "alicepw")
	alice.Create("INBOX", nil)
	mem.AddUser(alice)
	s := serveIMAP(t, imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		func() imapserver.Session { return mem.NewSession() })
	return s, alice
}

var uidRe = regexp.MustCompile(`UID (\d+)`)

// TestMergeDegradedAccount: while one account's server is down, its
// folders stay listed, selecting one answers NO [UNAVAILABLE], the
// unified INBOX shows the other account's messages, and the client is
// told once with an untagged OK [ALERT]; when the server is back, the
// next SELECT shows its messages again with the UIDs they had.
func TestMergeDegradedAccount(t *testing.T) {
	one, alice1 := startStoppableMem(t)
	two, alice2 := startStoppableMem(t)
	alice1.Append("INBOX", literal("Subject: one-a\r\n\r\nhello\r\n"), &imap.AppendOptions{})
	alice2.Create("Projects", nil)
	for _, s := range []string{"two-a", "two-b"} {
		alice2.Append("INBOX", literal("Subject: "+s+"\r\n\r\nhello\r\n"), &imap.AppendOptions{})
	}
	p := startMergeProxy(t, mergeConfig(t, one.addr, two.addr))
	c := dialText(t, p.addr, false)
	mergeLogin(t, c, "alice", "alicepw")

	uids := func(tag string) []string {
		t.Helper()
		c.send(tag + " UID FETCH 1:* (FLAGS)\r\n")
		lines := c.until(tag + " ")
		if !strings.HasPrefix(lines[len(lines)-1], tag+" OK") {
			t.Fatalf("UID FETCH: %q", lines)
		}
		var out []string
		for _, l := range lines {
			if m := uidRe.FindStringSubmatch(l); m != nil {
				out = append(out, m[1])
			}
		}
		slices.Sort(out)
		return out
	}
	c.send("b LIST \"\" \"*\"\r\n")
	c.until("b OK")
	c.send("c SELECT INBOX\r\n")
	if sel := strings.Join(c.until("c "), "\n"); !strings.Contains(sel, "* 3 EXISTS") {
		t.Fatalf("SELECT INBOX:\n%s", sel)
	}
	all := uids("d")
	c.send("e UNSELECT\r\n")
	c.until("e OK")

	two.stop()
	c.send("f LIST \"\" \"*\"\r\n")
	list := strings.Join(c.until("f "), "\n")
	if !strings.Contains(list, "Two/Projects") || !strings.Contains(list, "f OK") {
		t.Fatalf("LIST with account two down:\n%s", list)
	}
	if n := strings.Count(list, "* OK [ALERT]"); n != 1 || !strings.Contains(list, "second") {
		t.Errorf("LIST with account two down: %d alerts:\n%s", n, list)
	}
	c.send("g SELECT Two/Projects\r\n")
	if l := c.until("g "); !strings.HasPrefix(l[len(l)-1], "g NO [UNAVAILABLE]") {
		t.Fatalf("SELECT of a folder of the down account: %q", l)
	}
	// Until the hub hears of the outage (its watcher's connection
	// breaking), it may still give account two's last known state.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.send("h SELECT INBOX\r\n")
		sel := strings.Join(c.until("h "), "\n")
		if !strings.Contains(sel, "h OK") {
			t.Fatalf("SELECT INBOX with account two down:\n%s", sel)
		}
		if strings.Contains(sel, "[ALERT]") {
			t.Errorf("a second alert for the same account:\n%s", sel)
		}
		if strings.Contains(sel, "* 1 EXISTS") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SELECT INBOX with account two down:\n%s", sel)
		}
		time.Sleep(50 * time.Millisecond)
	}
	part := uids("i")
	if len(part) != 1 || !slices.Contains(all, part[0]) {
		t.Errorf("UIDs with account two down: %v, before %v", part, all)
	}

	two.start(two.addr)
	deadline = time.Now().Add(60 * time.Second)
	for n := 0; ; n++ {
		c.send("j SELECT INBOX\r\n")
		sel := strings.Join(c.until("j "), "\n")
		if strings.Contains(sel, "* 3 EXISTS") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("account two never came back:\n%s", sel)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if got := uids("k"); !slices.Equal(got, all) {
		t.Errorf("UIDs after account two came back: %v, before %v", got, all)
	}
	c.send("l LOGOUT\r\n")
	c.until("l OK")
}
