package merge

import (
	"context"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestSessionMoveToUnifiedTrash: deleting messages of several accounts
// into the unified Trash (UID MOVE from the unified INBOX) puts each in
// its own account's Trash, with the upstreams' own MOVE (no transfer
// between accounts), and COPYUID when the copies ascend with the
// originals.
func TestSessionMoveToUnifiedTrash(t *testing.T) {
	work := startSpecialMem(t, map[string]imap.MailboxAttr{"Trash": imap.MailboxAttrTrash})
	home := startSpecialMem(t, map[string]imap.MailboxAttr{"Deleted Items": imap.MailboxAttrTrash})
	work.put("INBOX")
	home.put("INBOX")
	work.put("INBOX")
	e := fakeEnv(t, work, home, 0)
	e.spec.UnifiedSpecialUse = []string{"trash"}
	st := e.st
	_, c := e.serve(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	md, err := c.Move(imap.SeqSetNum(1, 2, 3), "Trash").Wait()
	if err != nil {
		t.Fatalf("MOVE to the unified Trash: %v", err)
	}
	if n := len(upstreamFlags(work, "Trash")); n != 2 {
		t.Errorf("work's Trash has %d messages, want 2", n)
	}
	if n := len(upstreamFlags(home, "Deleted Items")); n != 1 {
		t.Errorf("home's Trash has %d messages, want 1", n)
	}
	if n := len(upstreamFlags(work, "INBOX")) + len(upstreamFlags(home, "INBOX")); n != 0 {
		t.Errorf("%d messages left in the INBOXes", n)
	}
	if rows, err := st.ListTransfers(context.Background(), "alice", false); err != nil || len(rows) != 0 {
		t.Errorf("transfers between accounts: %+v %v", rows, err)
	}
	// The originals were synced in account order (work's two, then
	// home's), the copies by MOVE in the same order: COPYUID pairs them.
	if md == nil || md.UIDValidity == 0 {
		t.Fatalf("no COPYUID: %+v", md)
	}
	sd, err := c.Select("Trash", nil).Wait()
	if err != nil || sd.NumMessages != 3 || sd.UIDValidity != md.UIDValidity {
		t.Fatalf("SELECT Trash: %+v %v (COPYUID %+v)", sd, err, md)
	}
	dst, ok := md.DestUIDs.(imap.UIDSet)
	if !ok {
		t.Fatalf("COPYUID destination %v", md.DestUIDs)
	}
	bufs, err := c.Fetch(dst, &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(bufs) != 3 {
		t.Errorf("the COPYUID UIDs in Trash: %d found, %v", len(bufs), err)
	}
}
