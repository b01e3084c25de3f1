package dovecot

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func login(t *testing.T, s *Server, implicitTLS bool, user, password string) *imapclient.Client {
	t.Helper()
	opts := &imapclient.Options{TLSConfig: s.TLSConfig()}
	var c *imapclient.Client
	var err error
	if implicitTLS {
		c, err = imapclient.DialTLS(s.TLSAddr, opts)
	} else {
		c, err = imapclient.DialStartTLS(s.PlainAddr, opts)
	}
	if err != nil {
		t.Fatalf("dial (implicit TLS %v): %v", implicitTLS, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

func message(subject string) []byte {
	return []byte("From: sender@example.org\r\nTo: alice@example.org\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.org>\r\n\r\nBody of " + subject + ".\r\n")
}

func TestLoginBothListeners(t *testing.T) {
	s := StartT(t, Options{})
	for _, implicitTLS := range []bool{false, true} {
		t.Run(fmt.Sprintf("implicitTLS=%v", implicitTLS), func(t *testing.T) {
			c := login(t, s, implicitTLS, "alice", "alicepw")
			caps, err := c.Capability().Wait()
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []imap.Cap{imap.CapIMAP4rev1, imap.CapIdle, imap.CapCondStore, imap.CapQResync, imap.CapID, imap.CapMove, imap.CapUIDPlus} {
				if !caps.Has(want) {
					t.Errorf("capability %s missing after login: %v", want, caps)
				}
			}
			mailboxes, err := c.List("", "*", nil).Collect()
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, m := range mailboxes {
				names = append(names, m.Mailbox)
			}
			if got := strings.Join(names, ","); !strings.Contains(got, "INBOX") || !strings.Contains(got, "Sent") {
				t.Errorf("LIST = %s, want INBOX and the special-use folders", got)
			}
			if err := c.Logout().Wait(); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("log is clean", func(t *testing.T) {
		for _, line := range strings.Split(s.LogTail(1000), "\n") {
			if strings.Contains(line, " Error: ") || strings.Contains(line, " Fatal: ") || strings.Contains(line, " Warning: ") {
				t.Errorf("dovecot logged: %s", line)
			}
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		c, err := imapclient.DialTLS(s.TLSAddr, &imapclient.Options{TLSConfig: s.TLSConfig()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login("bob", "not-bobs").Wait(); err == nil {
			t.Fatal("login with a wrong password succeeded")
		}
	})
}

func TestDeliverAndFetch(t *testing.T) {
	s := StartT(t, Options{Users: map[string]string{"carol": "{PLAIN}carolpw"}})
	if err := s.Deliver("carol", "INBOX", message("one"), message("two"), message("three")); err != nil {
		t.Fatal(err)
	}
	date := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	var many []Message
	for i := range 300 {
		many = append(many, Message{Body: message(fmt.Sprintf("bulk %03d", i))})
	}
	many[7].Flags = []string{`\Seen`, `\Flagged`}
	many[7].Date = date
	if err := s.DeliverMessages("carol", "Work/Projects", many...); err != nil {
		t.Fatal(err)
	}

	c := login(t, s, false, "carol", "carolpw")
	fetchAll := func(mailbox string, want int) []*imapclient.FetchMessageBuffer {
		t.Helper()
		sel, err := c.Select(mailbox, nil).Wait()
		if err != nil {
			t.Fatalf("select %s: %v", mailbox, err)
		}
		if int(sel.NumMessages) != want {
			t.Fatalf("%s has %d messages, want %d", mailbox, sel.NumMessages, want)
		}
		msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
			UID: true, Envelope: true, Flags: true, InternalDate: true, RFC822Size: true,
			BodySection: []*imap.FetchItemBodySection{{Peek: true}},
		}).Collect()
		if err != nil {
			t.Fatalf("fetch %s: %v", mailbox, err)
		}
		if len(msgs) != want {
			t.Fatalf("fetched %d messages from %s, want %d", len(msgs), mailbox, want)
		}
		return msgs
	}

	inbox := fetchAll("INBOX", 3)
	for i, subject := range []string{"one", "two", "three"} {
		m := inbox[i]
		if m.Envelope.Subject != subject || m.UID != imap.UID(i+1) {
			t.Errorf("message %d: UID %d subject %q, want UID %d subject %q", i+1, m.UID, m.Envelope.Subject, i+1, subject)
		}
		body := m.FindBodySection(&imap.FetchItemBodySection{Peek: true})
		if !bytes.Equal(body, message(subject)) {
			t.Errorf("message %d body = %q, want %q", i+1, body, message(subject))
		}
		if m.RFC822Size != int64(len(message(subject))) {
			t.Errorf("message %d RFC822.SIZE = %d, want %d", i+1, m.RFC822Size, len(message(subject)))
		}
		if len(m.Flags) != 1 || m.Flags[0] != "\\Recent" {
			t.Errorf("message %d flags = %v, want only \\Recent", i+1, m.Flags)
		}
	}

	bulk := fetchAll("Work/Projects", len(many))
	for i, m := range bulk {
		if want := fmt.Sprintf("bulk %03d", i); m.Envelope.Subject != want {
			t.Fatalf("message %d subject %q, want %q: UIDs do not follow delivery order", i+1, m.Envelope.Subject, want)
		}
	}
	if got := bulk[7].Flags; len(got) != 3 || !hasFlag(got, imap.FlagSeen) || !hasFlag(got, imap.FlagFlagged) {
		t.Errorf("flags = %v, want \\Seen \\Flagged \\Recent", got)
	}
	if !bulk[7].InternalDate.Equal(date) {
		t.Errorf("INTERNALDATE = %v, want %v", bulk[7].InternalDate, date)
	}

	// A delivery into a selected mailbox shows up at the next sync.
	if err := s.Deliver("carol", "Work/Projects", message("late")); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if n := c.Mailbox().NumMessages; n != uint32(len(many)+1) {
		t.Errorf("after a late delivery the mailbox has %d messages, want %d", n, len(many)+1)
	}

	if err := s.Deliver("nobody-here", "INBOX", message("x")); err == nil {
		t.Error("delivery to an unknown user succeeded")
	}
	if err := s.DeliverMessages("carol", "INBOX", Message{Body: message("x"), Flags: []string{"$Important"}}); err == nil {
		t.Error("delivery with a keyword succeeded")
	}
}

// TestManyConnections checks the limits that concurrency tests depend on:
// many sessions of one user from one IP, and the file limit.
func TestManyConnections(t *testing.T) {
	s := StartT(t, Options{})
	const n = 60 // Dovecot's default allows 10 per user and IP
	errs := make(chan error, n)
	clients := make(chan *imapclient.Client, n)
	for range n {
		go func() {
			c, err := imapclient.DialTLS(s.TLSAddr, &imapclient.Options{TLSConfig: s.TLSConfig()})
			if err != nil {
				errs <- err
				return
			}
			clients <- c
			if err := c.Login("alice", "alicepw").Wait(); err != nil {
				errs <- err
				return
			}
			_, err = c.Select("INBOX", nil).Wait()
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(clients)
	for c := range clients {
		c.Close()
	}
	// Dovecot gets the raised limit, not the soft one os/exec would restore.
	var own syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &own); err != nil {
		t.Fatal(err)
	}
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", s.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(limits), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(line, "Max open files") {
			if soft, _ := strconv.ParseUint(f[3], 10, 64); soft != own.Max {
				t.Errorf("dovecot's open file limit is %d, want the hard limit %d", soft, own.Max)
			}
		}
	}
}

func hasFlag(flags []imap.Flag, f imap.Flag) bool {
	for _, g := range flags {
		if g == f {
			return true
		}
	}
	return false
}

// TestOriginatingIP checks that Dovecot believes an ID x-originating-ip
// from the loopback network, as the proxy's route mode relies on it.
func TestOriginatingIP(t *testing.T) {
	s := StartT(t, Options{})
	conn, err := tls.Dial("tcp", s.TLSAddr, s.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	command := func(tag, line string) {
		t.Helper()
		if _, err := fmt.Fprintf(conn, "%s %s\r\n", tag, line); err != nil {
			t.Fatal(err)
		}
		for {
			resp, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			if strings.HasPrefix(resp, tag+" ") {
				if !strings.HasPrefix(resp, tag+" OK") {
					t.Fatalf("%s: %s", line, resp)
				}
				return
			}
		}
	}
	if greeting, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(greeting, "* OK") {
		t.Fatalf("greeting %q, %v", greeting, err)
	}
	command("a1", `ID ("name" "imapproxy-test" "x-originating-ip" "203.0.113.7" "x-originating-port" "40123")`)
	command("a2", "LOGIN alice alicepw")

	who, err := s.Who()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(who, "203.0.113.7") || !strings.Contains(who, "alice") {
		t.Errorf("doveadm who does not show alice from 203.0.113.7:\n%s", who)
	}
	log, err := os.ReadFile(s.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte("user=<alice>, method=PLAIN, rip=203.0.113.7")) {
		t.Errorf("log has no login of alice from 203.0.113.7:\n%s", log)
	}
	command("a3", "LOGOUT")
}

// TestStop checks that Stop ends every process of its instance, frees the
// ports, and leaves a second instance running.
func TestStop(t *testing.T) {
	Require(t)
	other := StartT(t, Options{})
	s, err := Start(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
		}
	}()
	// A logged-in session, so that a mail process runs too.
	login(t, s, true, "bob", "bobpw")
	pgid := s.cmd.Process.Pid
	if n := len(groupMembers(pgid)); n < 5 {
		t.Fatalf("only %d processes in dovecot's group before Stop", n)
	}
	instance := fmt.Sprintf("dovecot-test-%s", portOf(s.PlainAddr))
	if len(processesNamed(instance)) == 0 {
		t.Fatalf("no process titles mention %s", instance)
	}

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if left := groupMembers(pgid); len(left) != 0 {
		t.Errorf("processes %v of the stopped instance remain", left)
	}
	if left := processesNamed(instance); len(left) != 0 {
		t.Errorf("processes %v of the stopped instance remain", left)
	}
	for _, addr := range []string{s.PlainAddr, s.TLSAddr} {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections", addr)
		}
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}

	c := login(t, other, false, "alice", "alicepw")
	if err := c.Noop().Wait(); err != nil {
		t.Errorf("the other instance stopped working: %v", err)
	}
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// processesNamed lists live processes whose command line mentions name.
func processesNamed(name string) []string {
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var found []string
	for _, f := range cmdlines {
		data, err := os.ReadFile(f)
		if err == nil && bytes.HasPrefix(data, []byte(name+"/")) {
			found = append(found, fmt.Sprintf("%s: %q", filepath.Base(filepath.Dir(f)), data))
		}
	}
	return found
}

func TestLongDirUsesShortBaseDir(t *testing.T) {
	Require(t)
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 40))
	s, err := Start(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat(s.BaseDir); !os.IsNotExist(err) {
			t.Errorf("temporary base_dir %s left behind (%v)", s.BaseDir, err)
		}
	}()
	if strings.HasPrefix(s.BaseDir, dir) {
		t.Errorf("base_dir %s is under the long directory", s.BaseDir)
	}
	login(t, s, false, "alice", "alicepw")
}

// BenchmarkDeliver measures filling a mailbox, then opening it once.
func BenchmarkDeliver(b *testing.B) {
	s := StartT(b, Options{})
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n"), 16)
	msgs := make([][]byte, 1000)
	for i := range msgs {
		msgs[i] = append(message(fmt.Sprintf("m%d", i)), body...)
	}
	b.SetBytes(int64(len(msgs[0])))
	b.ResetTimer()
	for i := 0; i < b.N; i += len(msgs) {
		n := min(len(msgs), b.N-i)
		if err := s.Deliver("alice", "INBOX", msgs[:n]...); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	start := time.Now()
	out, err := s.Doveadm("mailbox", "status", "-u", "alice", "messages", "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-first-status")
	if got := strings.TrimSpace(string(out)); !strings.HasSuffix(got, fmt.Sprintf(" messages=%d", b.N)) {
		b.Fatalf("status = %s, want %d messages", got, b.N)
	}
}
