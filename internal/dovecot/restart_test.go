package dovecot

import (
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestKillRestart kills an instance with a client logged in, restarts it
// on the same ports and checks that the mail is still there.
func TestKillRestart(t *testing.T) {
	s := StartT(t, Options{})
	if err := s.Deliver("alice", "INBOX", message("before the kill")); err != nil {
		t.Fatal(err)
	}
	c := login(t, s, true, "alice", "alicepw")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(); err == nil {
		t.Fatal("Restart of a running instance succeeded")
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.Noop().Wait(); err == nil {
		t.Error("NOOP on a killed instance succeeded")
	}
	c.Close()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	for _, tls := range []bool{true, false} {
		c := login(t, s, tls, "alice", "alicepw")
		sd, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			t.Fatal(err)
		}
		if sd.NumMessages != 1 {
			t.Errorf("after a restart INBOX has %d messages, want 1", sd.NumMessages)
		}
		c.Close()
	}
	// Stop, then restart once more.
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	login(t, s, true, "alice", "alicepw").Close()
}
