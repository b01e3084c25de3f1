package store

import (
	"path/filepath"
	"testing"
	"time"
)

func TestSQLiteTransfers(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenSQLite(ctx, path)
	must(t, err)
	date := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	tr := Transfer{
		User: "ann", Kind: TransferMove, State: TransferStarted,
		SrcAccount: "work", SrcMailbox: "INBOX", SrcUIDValidity: 7, SrcUID: 42,
		DstAccount: "home", DstMailbox: "Archive", DstUIDValidity: 9, DstUIDNext: 100,
		Size: 1234, MessageID: "a@b", InternalDate: date,
	}
	id1, err := s.AddTransfer(ctx, tr)
	must(t, err)
	tr.Kind, tr.SrcUID, tr.MessageID, tr.InternalDate = TransferCopy, 43, "", time.Time{}
	id2, err := s.AddTransfer(ctx, tr)
	must(t, err)
	if _, err := s.AddTransfer(ctx, Transfer{User: "bob", Kind: TransferCopy, State: TransferStarted}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddTransfer(ctx, Transfer{User: "bob", Kind: "teleport", State: TransferStarted}); err == nil {
		t.Error("AddTransfer of an unknown kind succeeded")
	}
	must(t, s.Close())

	s = openTestSQLite(t, path)
	open, err := s.ListTransfers(ctx, "ann", true)
	must(t, err)
	if len(open) != 2 || open[0].ID != id1 || open[1].ID != id2 {
		t.Fatalf("unfinished after reopening = %+v", open)
	}
	got := open[0]
	if got.Kind != TransferMove || got.State != TransferStarted || got.SrcUID != 42 || got.SrcUIDValidity != 7 ||
		got.DstMailbox != "Archive" || got.DstUIDNext != 100 || got.DstUIDValidity != 9 || got.Size != 1234 ||
		got.MessageID != "a@b" || !got.InternalDate.Equal(date) || got.Created.IsZero() || got.User != "ann" {
		t.Errorf("row = %+v", got)
	}
	if !open[1].InternalDate.IsZero() || open[1].MessageID != "" {
		t.Errorf("second row = %+v", open[1])
	}

	got.State, got.DstUID, got.DstUIDValidity = TransferAppended, 101, 10
	must(t, s.UpdateTransfer(ctx, got))
	if err := s.UpdateTransfer(ctx, Transfer{ID: 999, State: TransferDone}); err != ErrNotFound {
		t.Errorf("UpdateTransfer of a missing row: %v", err)
	}
	open, err = s.ListTransfers(ctx, "ann", true)
	must(t, err)
	if len(open) != 2 || open[0].State != TransferAppended || open[0].DstUID != 101 || open[0].DstUIDValidity != 10 {
		t.Errorf("after update = %+v", open)
	}
	must(t, s.SetTransferStates(ctx, []int64{id1, id2, 12345}, TransferDone))
	if open, err = s.ListTransfers(ctx, "ann", true); err != nil || len(open) != 0 {
		t.Errorf("unfinished after done = %+v, %v", open, err)
	}
	all, err := s.ListTransfers(ctx, "ann", false)
	must(t, err)
	if len(all) != 2 || all[0].State != TransferDone || !all[0].State.Finished() {
		t.Errorf("all = %+v", all)
	}
	n, err := s.PruneTransfers(ctx, time.Now().Add(time.Minute))
	must(t, err)
	if n != 2 {
		t.Errorf("pruned %d, want 2 (bob's unfinished row stays)", n)
	}
	if all, _ := s.ListTransfers(ctx, "bob", false); len(all) != 1 {
		t.Errorf("bob's rows after prune = %+v", all)
	}
}
