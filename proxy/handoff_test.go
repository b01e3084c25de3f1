package proxy

import (
	"bufio"
	"io"
	"log"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// TestHandoffToImapserver hands an authenticated connection, with a
// command pipelined after LOGIN, to an imapserver whose sessions start
// authenticated: the client sees one tagged OK for its login and then the
// server's answers, never a PREAUTH greeting.
func TestHandoffToImapserver(t *testing.T) {
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("alice", "alicepw")
	u.Create("INBOX", nil)
	u.Append("INBOX", literal("Subject: hi\r\n\r\nhello\r\n"), &imap.AppendOptions{})
	mem.AddUser(u)
	h := NewHandoff(imap.CapSet{imap.CapIMAP4rev1: {}}, func(_ *imapserver.Conn, info any) (imapserver.Session, error) {
		s := mem.NewSession()
		// The front door already checked the password; the test backend
		// needs its own login to know the user.
		if err := s.Login(info.(string), "alicepw"); err != nil {
			return nil, err
		}
		return s, nil
	}, log.New(io.Discard, "", 0))
	defer h.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		// The front door's part: read the LOGIN line, keep what follows.
		br := bufio.NewReader(c)
		br.ReadString('\n')
		rest, _ := br.Peek(br.Buffered())
		h.Serve(c, "a", append([]byte(nil), rest...), "alice")
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "a LOGIN alice alicepw\r\nb SELECT INBOX\r\n")
	br := bufio.NewReader(c)
	first, _ := br.ReadString('\n')
	if !strings.HasPrefix(first, "a OK [CAPABILITY IMAP4rev1") || !strings.HasSuffix(first, "] Logged in\r\n") {
		t.Fatalf("login answer %q", first)
	}
	var lines []string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", lines, err)
		}
		lines = append(lines, l)
		if strings.HasPrefix(l, "b ") {
			break
		}
	}
	all := strings.Join(lines, "")
	if !strings.Contains(all, "* 1 EXISTS") || !strings.HasPrefix(lines[len(lines)-1], "b OK") || strings.Contains(all, "PREAUTH") {
		t.Fatalf("SELECT through the handoff: %q", lines)
	}
	io.WriteString(c, "c LOGOUT\r\n")
	if l, _ := br.ReadString('\n'); !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("LOGOUT: %q", l)
	}
}

func TestPreauthToOK(t *testing.T) {
	for in, want := range map[string]string{
		"* PREAUTH [CAPABILITY IMAP4rev1 IDLE] IMAP server ready": "t1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n",
		"* PREAUTH ready":        "t1 OK Logged in\r\n",
		"* BYE [UNAVAILABLE] no": "* BYE [UNAVAILABLE] no\r\n",
		"* OK [CAPABILITY X] hi": "* OK [CAPABILITY X] hi\r\n",
	} {
		if got := string(preauthToOK([]byte(in), "t1")); got != want {
			t.Errorf("preauthToOK(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHandoffCloseAtOnce closes a Handoff that never served a connection,
// which raced with imapserver's Serve before.
func TestHandoffCloseAtOnce(t *testing.T) {
	for i := 0; i < 20; i++ {
		h := NewHandoff(imap.CapSet{imap.CapIMAP4rev1: {}}, func(*imapserver.Conn, any) (imapserver.Session, error) {
			return nil, net.ErrClosed
		}, log.New(io.Discard, "", 0))
		h.Close()
	}
}
