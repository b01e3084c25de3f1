package merge

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

func TestRuleAccount(t *testing.T) {
	rules := []AppendRule{
		{From: []string{"carol@example.org", "@lists.example.org"}, Account: "home"},
		{From: []string{"@example.com"}, To: []string{"@example.org"}, Account: "both"},
		{To: []string{"boss@corp.example"}, Account: "work"},
	}
	tests := []struct {
		head, want string
	}{
		{"From: Carol <CAROL@Example.ORG>\r\nTo: x@y.z\r\n\r\n", "home"},
		{"from: golang@LISTS.example.org\r\n\r\n", "home"},
		{"From: a@sub.lists.example.org\r\n\r\n", ""}, // a domain entry is that domain only
		{"From: a@example.com\r\nTo: b@x.example, c@example.org\r\n\r\n", "both"},
		{"From: a@example.com\r\nTo: b@x.example\r\n\r\n", ""},
		{"From: x@y.z\r\nTo:\r\n  \"The Boss\" <boss@corp.example>\r\n\r\n", "work"}, // folded
		{"From: \"carol@example.org\" <mallory@evil.example>\r\n\r\n", ""},           // the display name is no address
		{"From: =?x-unknown?q?Carol?= <carol@example.org>\r\n\r\n", "home"},
		{"From: broken <<carol@example.org>\r\n\r\n", "home"}, // unparsable: loose
		{"Subject: x\r\n\r\nFrom: carol@example.org\r\n", ""}, // in the body
		{"Subject: x\nFrom: carol@example.org\n\n", "home"},   // bare LF
		{"From: carol@exam", ""},                              // cut short
		{"", ""},
	}
	for _, tt := range tests {
		got, ok := ruleAccount(rules, []byte(tt.head))
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("ruleAccount(%q) = %q, %v; want %q", tt.head, got, ok, tt.want)
		}
	}
}

func TestReadHead(t *testing.T) {
	msg := "From: a@b.c\r\nSubject: s\r\n\r\n" + strings.Repeat("body\r\n", 30000)
	head, err := readHead(iotest.OneByteReader(strings.NewReader(msg)), maxRuleHeader)
	if err != nil || string(head) != "From: a@b.c\r\nSubject: s\r\n\r\n" {
		t.Errorf("one byte at a time: %q, %v", head, err)
	}
	head, err = readHead(strings.NewReader(msg), maxRuleHeader)
	if err != nil || !strings.HasPrefix(msg, string(head)) || len(head) > 4096 {
		t.Errorf("read %d bytes, %v", len(head), err)
	}
	// A header without end is read up to the bound, and nothing is lost.
	huge := "X-Long: " + strings.Repeat("x", 100<<10) + "\r\n\r\nbody"
	r := strings.NewReader(huge)
	head, err = readHead(r, maxRuleHeader)
	if err != nil || len(head) != maxRuleHeader {
		t.Fatalf("read %d bytes, %v", len(head), err)
	}
	rest, _ := io.ReadAll(io.MultiReader(bytes.NewReader(head), r))
	if string(rest) != huge {
		t.Error("header and rest differ from the message")
	}
	head, err = readHead(strings.NewReader("\r\nbody"), maxRuleHeader)
	if err != nil || string(head) != "\r\nbody" {
		t.Errorf("empty header: %q, %v", head, err)
	}
	if _, err := readHead(iotest.ErrReader(io.ErrUnexpectedEOF), maxRuleHeader); err == nil {
		t.Error("read error lost")
	}
}

// limitSession is an upstream session advertising APPENDLIMIT=limit.
type limitSession struct {
	imapserver.Session
	limit uint32
}

// AppendLimit implements imapserver.SessionAppendLimit.
func (s limitSession) AppendLimit() uint32 { return s.limit }

// Namespace implements imapserver.SessionNamespace.
func (s limitSession) Namespace() (*imap.NamespaceData, error) {
	return s.Session.(imapserver.SessionNamespace).Namespace()
}

// Move implements imapserver.SessionMove.
func (s limitSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	return s.Session.(imapserver.SessionMove).Move(w, numSet, dest)
}

func TestSessionAppendRulesAndLimit(t *testing.T) {
	const limit = 2000
	e := newSessEnvWrapped(t, func(s imapserver.Session) imapserver.Session { return limitSession{s, limit} })
	e.spec.AppendRules = []AppendRule{
		{From: []string{"@home.example"}, Account: "home"},
		{To: []string{"family@home.example"}, Account: "HOME"},
	}
	m, c := e.serve(nil)
	count := func(u *memUpstream) int { return len(upstreamFlags(u, "INBOX")) }
	work0, home0 := count(e.work), count(e.home)

	appendMsg := func(mailbox, head string, size int) error {
		t.Helper()
		msg := head + "\r\n\r\n" + strings.Repeat("x", max(0, size-len(head)-4))
		cmd := c.Append(mailbox, int64(len(msg)), nil)
		cmd.Write([]byte(msg))
		cmd.Close()
		_, err := cmd.Wait()
		return err
	}
	steps := []struct {
		mailbox, head string
		size          int
		work, home    int // messages added so far
	}{
		{"INBOX", "From: Ann <ann@HOME.example>\r\nSubject: 1", 100, 0, 1},
		{"INBOX", "From: x@y.example\r\nTo: Family <family@home.example>", 100, 0, 2},
		{"INBOX", "From: x@y.example\r\nSubject: default", 100, 1, 2},
		{"Work/INBOX", "From: ann@home.example", 100, 2, 2},             // an account's folder: no rules
		{"INBOX", "From: ann@home.example\r\nSubject: big", 5000, 2, 3}, // home has no limit
	}
	for i, st := range steps {
		if err := appendMsg(st.mailbox, st.head, st.size); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if w, h := count(e.work)-work0, count(e.home)-home0; w != st.work || h != st.home {
			t.Fatalf("step %d: work +%d, home +%d; want +%d, +%d", i, w, h, st.work, st.home)
		}
	}
	wantCode(t, "append over work's limit", appendMsg("INBOX", "From: x@y.example", limit+1), imap.ResponseCodeTooBig)
	wantCode(t, "append over the limit to Work/INBOX", appendMsg("Work/INBOX", "From: x@y.example", limit+1), imap.ResponseCodeTooBig)
	if count(e.work)-work0 != 2 {
		t.Error("a message over the limit reached the upstream")
	}

	// imapclient reads APPENDLIMIT NIL (no limit) as the largest uint32.
	for name, want := range map[string]uint32{"Work/INBOX": limit, "INBOX": limit, "Home/INBOX": ^uint32(0)} {
		st, err := c.Status(name, &imap.StatusOptions{AppendLimit: true, NumMessages: true}).Wait()
		switch {
		case err != nil:
			t.Errorf("STATUS %s: %v", name, err)
		case st.AppendLimit == nil || *st.AppendLimit != want:
			t.Errorf("STATUS %s APPENDLIMIT = %v, want %d", name, st.AppendLimit, want)
		}
	}

	s, err := m.NewSession(context.Background(), e.spec)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, ok := s.(*Session).LearnAppendLimit(context.Background()); !ok || n != limit {
		t.Errorf("LearnAppendLimit = %d, %v; want %d", n, ok, limit)
	}
}
