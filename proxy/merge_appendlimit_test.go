package proxy

import (
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// limitedSession is an upstream session advertising APPENDLIMIT=limit.
type limitedSession struct {
	imapserver.Session
	limit uint32
}

// AppendLimit implements imapserver.SessionAppendLimit.
func (s limitedSession) AppendLimit() uint32 { return s.limit }

// startLimitedMemUpstream is startMemUpstream (user alice/alicepw only,
// IMAP4rev1) with APPENDLIMIT=limit.
func startLimitedMemUpstream(t *testing.T, limit uint32) string {
	t.Helper()
	mem := imapmemserver.New()
	alice := imapmemserver.NewUser("alice", "alicepw")
	alice.Create("INBOX", nil)
	mem.AddUser(alice)
	return serveIMAP(t, imap.CapSet{imap.CapIMAP4rev1: {}},
		func() imapserver.Session { return limitedSession{mem.NewSession(), limit} }).addr
}

// The merged session advertises the smallest of its upstreams'
// APPENDLIMITs, refuses a larger APPEND before its literal, and
// advertises none when no upstream does.
func TestMergeAppendLimit(t *testing.T) {
	limited := startLimitedMemUpstream(t, 3000)
	unlimited, _ := startMemUpstream(t)
	for _, tt := range []struct {
		name, addr1, addr2 string
		want               string
	}{
		{"one limited", unlimited, limited, "APPENDLIMIT=3000"},
		{"none limited", unlimited, unlimited, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := startMergeProxy(t, mergeConfig(t, tt.addr1, tt.addr2))
			c := dialText(t, p.addr, false)
			c.line()
			c.send("a LOGIN alice alicepw\r\n")
			ok := c.line()
			if !strings.HasPrefix(ok, "a OK [CAPABILITY ") {
				t.Fatalf("login: %q", ok)
			}
			if tt.want == "" {
				if strings.Contains(ok, "APPENDLIMIT") {
					t.Errorf("login advertises a limit: %q", ok)
				}
			} else {
				if !strings.Contains(ok, " "+tt.want+" ") && !strings.HasSuffix(strings.TrimSuffix(ok, "] Logged in"), " "+tt.want) {
					t.Errorf("login lacks %s: %q", tt.want, ok)
				}
				c.send("b APPEND INBOX {3001}\r\n")
				if l := c.line(); !strings.HasPrefix(l, "b NO [TOOBIG]") {
					t.Errorf("APPEND over the limit: %q", l)
				}
				c.send("c APPEND INBOX {10}\r\n")
				if l := c.line(); !strings.HasPrefix(l, "+") {
					t.Fatalf("APPEND under the limit: %q", l)
				}
				c.send("Subject: x\r\n")
				if l := c.until("c "); !strings.HasPrefix(l[len(l)-1], "c OK") {
					t.Errorf("APPEND under the limit: %q", l)
				}
			}
			c.send("z LOGOUT\r\n")
			c.until("z OK")
		})
	}
}
