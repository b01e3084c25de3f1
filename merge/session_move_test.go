package merge

import (
	"errors"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestSessionMoveWithoutUIDPlus: within an account whose server has
// neither MOVE nor UIDPLUS, a MOVE is refused with NO [CANNOT] rather than
// done with COPY and a plain EXPUNGE, which would also expunge the other
// \Deleted messages of the folder; COPY still works.
func TestSessionMoveWithoutUIDPlus(t *testing.T) {
	bare := imap.CapSet{imap.CapIMAP4rev1: {}}
	work := startFakeMem(t, bare, nil, nil)
	home := startFakeMem(t, bare, nil, nil)
	if err := work.user.Create("Archive", nil); err != nil {
		t.Fatal(err)
	}
	putBody(t, work.memUpstream, "INBOX", "keep me deleted")
	putBody(t, work.memUpstream, "INBOX", "move me")
	e := fakeEnv(t, work.memUpstream, home.memUpstream, 0)
	_, c := e.serve(nil)
	if _, err := c.Select("Work/INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	_, err := c.Move(imap.SeqSetNum(2), "Work/Archive").Wait()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeCannot {
		t.Fatalf("MOVE without MOVE and UIDPLUS upstream: %v", err)
	}
	if n := len(upstreamFlags(work.memUpstream, "INBOX")); n != 2 {
		t.Errorf("the source has %d messages, want both", n)
	}
	if _, err := c.Copy(imap.SeqSetNum(2), "Work/Archive").Wait(); err != nil {
		t.Fatalf("COPY: %v", err)
	}
	if n := len(upstreamFlags(work.memUpstream, "Archive")); n != 1 {
		t.Errorf("Archive has %d messages after COPY, want 1", n)
	}
}
