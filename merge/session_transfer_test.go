package merge

import (
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestSessionTransfer: COPY and MOVE between accounts through a merged
// session answer COPYUID in the target's virtual UIDs, and the moved
// message leaves the source with an EXPUNGE.
func TestSessionTransfer(t *testing.T) {
	e := newSessEnv(t)
	_, c := e.serve(nil)
	sd, err := c.Select("Work/INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	homeN := len(upstreamFlags(e.home, "INBOX"))
	cd, err := c.Copy(imap.SeqSetNum(1, 2), "Home/INBOX").Wait()
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status("Home/INBOX", &imap.StatusOptions{UIDValidity: true, UIDNext: true, NumMessages: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	dst, _ := cd.DestUIDs.Nums()
	if cd.UIDValidity != st.UIDValidity || len(dst) != 2 || dst[1] >= st.UIDNext || int(*st.NumMessages) != homeN+2 {
		t.Errorf("COPY: COPYUID %+v, Home/INBOX %+v (had %d)", cd, st, homeN)
	}
	if n := len(upstreamFlags(e.home, "INBOX")); n != homeN+2 {
		t.Errorf("home INBOX has %d messages, want %d", n, homeN+2)
	}

	md, err := c.Move(imap.SeqSetNum(1), "Home/INBOX").Wait()
	if err != nil || md == nil || md.UIDValidity != st.UIDValidity {
		t.Fatalf("MOVE: %+v %v", md, err)
	}
	if n := len(upstreamFlags(e.home, "INBOX")); n != homeN+3 {
		t.Errorf("home INBOX has %d messages after MOVE, want %d", n, homeN+3)
	}
	sd2, err := c.Select("Work/INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil || sd2.NumMessages != sd.NumMessages-1 {
		t.Errorf("Work/INBOX after MOVE: %+v %v (had %d)", sd2, err, sd.NumMessages)
	}
	// The moved message is one message in the target's virtual mailbox.
	hd, err := c.Select("Home/INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil || int(hd.NumMessages) != homeN+3 {
		t.Errorf("Home/INBOX: %+v %v", hd, err)
	}
}
