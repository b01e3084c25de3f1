package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

// withClock makes the store's UIDVALIDITY clock read *now for the rest of
// the test. Tests using it must not run in parallel.
func withClock(t *testing.T, now *time.Time) {
	old := vmailboxClock
	vmailboxClock = func() time.Time { return *now }
	t.Cleanup(func() { vmailboxClock = old })
}

func mustVMailbox(t *testing.T, ctx context.Context, s Store, user, name string) VMailbox {
	t.Helper()
	m, err := s.VMailbox(ctx, user, name)
	must(t, err)
	return m
}

func mapUIDs(t *testing.T, ctx context.Context, s Store, id int64, src Source, uids ...uint32) []uint32 {
	t.Helper()
	vuids, err := s.MapUIDs(ctx, id, src, uids)
	must(t, err)
	if len(vuids) != len(uids) {
		t.Fatalf("MapUIDs(%v) returned %d vuids", uids, len(vuids))
	}
	return vuids
}

// vuidsOf lists the vuids of msgs.
func vuidsOf(msgs []VMessage) []uint32 {
	var v []uint32
	for _, m := range msgs {
		v = append(v, m.VUID)
	}
	return v
}

func TestVMailboxUIDValidityFromClock(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		before := time.Now().Unix()
		m := mustVMailbox(t, ctx, s, "ann", "INBOX")
		after := time.Now().Unix()
		if int64(m.UIDValidity) < before || int64(m.UIDValidity) > after {
			t.Errorf("UIDVALIDITY %d not from the clock (%d..%d)", m.UIDValidity, before, after)
		}
		if m.ID == 0 || m.User != "ann" || m.Name != "INBOX" || m.UIDNext != 1 || m.Created.IsZero() {
			t.Errorf("new mailbox = %+v", m)
		}
		// Asking again returns the same mailbox.
		again := mustVMailbox(t, ctx, s, "ann", "INBOX")
		if again != m {
			t.Errorf("VMailbox again = %+v, want %+v", again, m)
		}
		// Several in the same second: strictly increasing.
		prev := m.UIDValidity
		for i := range 5 {
			m := mustVMailbox(t, ctx, s, "ann", fmt.Sprint("box", i))
			if m.UIDValidity <= prev {
				t.Errorf("box%d: UIDVALIDITY %d not above %d", i, m.UIDValidity, prev)
			}
			prev = m.UIDValidity
		}
		// Another user's start from the clock again.
		if bob := mustVMailbox(t, ctx, s, "bob", "INBOX"); int64(bob.UIDValidity) > time.Now().Unix() {
			t.Errorf("bob's UIDVALIDITY %d is ahead of the clock", bob.UIDValidity)
		}
	})
}

func TestVMailboxUIDValidityNeverRepeats(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		now := time.Unix(2_000_000_000, 0)
		withClock(t, &now)
		a := mustVMailbox(t, ctx, s, "ann", "A")
		b := mustVMailbox(t, ctx, s, "ann", "B")
		if a.UIDValidity != 2_000_000_000 || b.UIDValidity != 2_000_000_001 {
			t.Errorf("same second: %d, %d", a.UIDValidity, b.UIDValidity)
		}
		must(t, s.DeleteVMailbox(ctx, "ann", "B"))
		must(t, s.DeleteVMailbox(ctx, "ann", "A"))
		a2 := mustVMailbox(t, ctx, s, "ann", "A")
		if a2.UIDValidity != 2_000_000_002 || a2.ID == a.ID {
			t.Errorf("re-created after delete: %+v (was %+v)", a2, a)
		}
		now = time.Unix(1_000, 0) // the clock went back
		if c := mustVMailbox(t, ctx, s, "ann", "C"); c.UIDValidity != 2_000_000_003 {
			t.Errorf("clock set back: %d", c.UIDValidity)
		}
		now = time.Unix(2_100_000_000, 0)
		if d := mustVMailbox(t, ctx, s, "ann", "D"); d.UIDValidity != 2_100_000_000 {
			t.Errorf("clock ahead: %d", d.UIDValidity)
		}
		now = time.Unix(0, 0)
		if e := mustVMailbox(t, ctx, s, "eve", "INBOX"); e.UIDValidity != 1 {
			t.Errorf("clock at 0: %d, want 1 (never 0)", e.UIDValidity)
		}
		// Past 2106 the clock saturates; then nothing is left.
		now = time.Unix(math.MaxUint32+100, 0)
		if f := mustVMailbox(t, ctx, s, "fred", "INBOX"); f.UIDValidity != math.MaxUint32 {
			t.Errorf("clock past 2^32: %d", f.UIDValidity)
		}
		if _, err := s.VMailbox(ctx, "fred", "Other"); err == nil {
			t.Error("a UIDVALIDITY past 2^32-1 was given")
		}
	})
}

func TestVMailboxListRenameDelete(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		src := Source{Account: "work", Mailbox: "INBOX", UIDValidity: 7}
		a := mustVMailbox(t, ctx, s, "ann", "A")
		b := mustVMailbox(t, ctx, s, "ann", "B")
		mustVMailbox(t, ctx, s, "bob", "A")
		vuids := mapUIDs(t, ctx, s, a.ID, src, 10, 20)
		must(t, s.SetKeywords(ctx, a.ID, vuids[0], []string{"$Label1"}))
		mapUIDs(t, ctx, s, b.ID, src, 30)

		list, err := s.ListVMailboxes(ctx, "ann")
		must(t, err)
		if len(list) != 2 || list[0].Name != "A" || list[1].Name != "B" || list[0].UIDNext != 3 {
			t.Fatalf("ListVMailboxes = %+v", list)
		}

		if err := s.RenameVMailbox(ctx, "ann", "A", "B"); !errors.Is(err, ErrExists) {
			t.Errorf("rename onto an existing one: %v", err)
		}
		if err := s.RenameVMailbox(ctx, "ann", "Z", "Y"); !errors.Is(err, ErrNotFound) {
			t.Errorf("rename of a missing one: %v", err)
		}
		must(t, s.RenameVMailbox(ctx, "ann", "A", "C"))
		c := mustVMailbox(t, ctx, s, "ann", "C")
		if c.ID != a.ID || c.UIDValidity != a.UIDValidity || c.UIDNext != 3 {
			t.Errorf("renamed = %+v, was %+v", c, a)
		}
		msgs, err := s.VMessages(ctx, c.ID)
		must(t, err)
		if !slices.Equal(vuidsOf(msgs), vuids) {
			t.Errorf("renamed mailbox's vuids = %v, want %v", vuidsOf(msgs), vuids)
		}
		if again := mapUIDs(t, ctx, s, c.ID, src, 20, 10); !slices.Equal(again, []uint32{vuids[1], vuids[0]}) {
			t.Errorf("re-mapping after rename = %v", again)
		}
		// The old name is free, as a new mailbox with a new UIDVALIDITY.
		if a2 := mustVMailbox(t, ctx, s, "ann", "A"); a2.ID == a.ID || a2.UIDValidity <= b.UIDValidity || a2.UIDNext != 1 {
			t.Errorf("new A = %+v", a2)
		}
		// bob's A is another mailbox.
		if bobs, _ := s.ListVMailboxes(ctx, "bob"); len(bobs) != 1 || bobs[0].Name != "A" {
			t.Errorf("bob's mailboxes = %+v", bobs)
		}

		must(t, s.DeleteVMailbox(ctx, "ann", "C"))
		if err := s.DeleteVMailbox(ctx, "ann", "C"); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleting twice: %v", err)
		}
		for name, err := range map[string]error{
			"VMessages":      func() error { _, err := s.VMessages(ctx, c.ID); return err }(),
			"SourceMessages": func() error { _, err := s.SourceMessages(ctx, c.ID, "work", "INBOX"); return err }(),
			"MapUIDs":        func() error { _, err := s.MapUIDs(ctx, c.ID, src, []uint32{1}); return err }(),
			"ForgetSource":   func() error { _, err := s.ForgetSource(ctx, c.ID, "work", "INBOX", 0); return err }(),
			"RemoveVUIDs":    s.RemoveVUIDs(ctx, c.ID, []uint32{1}),
			"SetKeywords":    s.SetKeywords(ctx, c.ID, vuids[0], nil),
			"Keywords":       func() error { _, err := s.Keywords(ctx, c.ID, vuids); return err }(),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s of a deleted mailbox: %v, want ErrNotFound", name, err)
			}
		}
		// B's rows stay.
		if msgs, err := s.VMessages(ctx, b.ID); err != nil || len(msgs) != 1 {
			t.Errorf("B after deleting C = %v, %v", msgs, err)
		}
	})
}

func TestMapUIDs(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		m := mustVMailbox(t, ctx, s, "ann", "INBOX")
		src := Source{Account: "work", Mailbox: "INBOX", UIDValidity: 100}

		// Allocation in increasing order of upstream UID; output in input
		// order; duplicates map once.
		got := mapUIDs(t, ctx, s, m.ID, src, 30, 10, 20, 10)
		if want := []uint32{3, 1, 2, 1}; !slices.Equal(got, want) {
			t.Errorf("first map = %v, want %v", got, want)
		}
		// Idempotent.
		if got := mapUIDs(t, ctx, s, m.ID, src, 20, 30, 10); !slices.Equal(got, []uint32{2, 3, 1}) {
			t.Errorf("again = %v", got)
		}
		// Known and new mixed: new ones above UIDNEXT, even below known UIDs.
		if got := mapUIDs(t, ctx, s, m.ID, src, 40, 5, 20, 25); !slices.Equal(got, []uint32{6, 4, 2, 5}) {
			t.Errorf("mixed = %v, want [6 4 2 5]", got)
		}
		if got := mapUIDs(t, ctx, s, m.ID, src); len(got) != 0 {
			t.Errorf("no uids = %v", got)
		}
		if m2 := mustVMailbox(t, ctx, s, "ann", "INBOX"); m2.UIDNext != 7 {
			t.Errorf("UIDNEXT = %d, want 7", m2.UIDNext)
		}
		msgs, err := s.VMessages(ctx, m.ID)
		must(t, err)
		want := []VMessage{
			{1, "work", "INBOX", 100, 10}, {2, "work", "INBOX", 100, 20}, {3, "work", "INBOX", 100, 30},
			{4, "work", "INBOX", 100, 5}, {5, "work", "INBOX", 100, 25}, {6, "work", "INBOX", 100, 40},
		}
		if !slices.Equal(msgs, want) {
			t.Errorf("VMessages = %v, want %v", msgs, want)
		}

		if _, err := s.MapUIDs(ctx, m.ID, src, []uint32{1, 0}); err == nil {
			t.Error("UID 0 mapped")
		}
		if _, err := s.MapUIDs(ctx, m.ID, Source{Account: "work", Mailbox: "INBOX"}, []uint32{1}); err == nil {
			t.Error("UIDVALIDITY 0 mapped")
		}
		if _, err := s.MapUIDs(ctx, 999999, src, []uint32{1}); !errors.Is(err, ErrNotFound) {
			t.Errorf("MapUIDs of an unknown mailbox: %v", err)
		}
	})
}

func TestMapUIDsTwoSources(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		m := mustVMailbox(t, ctx, s, "ann", "INBOX")
		work := Source{Account: "work", Mailbox: "INBOX", UIDValidity: 1}
		home := Source{Account: "home", Mailbox: "INBOX", UIDValidity: 1}
		// The same upstream UIDs in two sources are different messages.
		w1 := mapUIDs(t, ctx, s, m.ID, work, 1, 2)
		h1 := mapUIDs(t, ctx, s, m.ID, home, 1, 2)
		w2 := mapUIDs(t, ctx, s, m.ID, work, 3)
		h2 := mapUIDs(t, ctx, s, m.ID, home, 2, 3)
		all := slices.Concat(w1, h1, w2, h2[1:])
		if want := []uint32{1, 2, 3, 4, 5, 6}; !slices.Equal(all, want) {
			t.Errorf("interleaved = %v, want %v", all, want)
		}
		if h2[0] != h1[1] {
			t.Errorf("home 2 = %d then %d", h1[1], h2[0])
		}
		msgs, err := s.SourceMessages(ctx, m.ID, "home", "INBOX")
		must(t, err)
		if !slices.Equal(vuidsOf(msgs), []uint32{3, 4, 6}) {
			t.Errorf("SourceMessages(home) = %v", msgs)
		}
		if msgs, err := s.SourceMessages(ctx, m.ID, "home", "Sent"); err != nil || len(msgs) != 0 {
			t.Errorf("SourceMessages of an unmapped source = %v, %v", msgs, err)
		}
	})
}

func TestForgetSource(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		m := mustVMailbox(t, ctx, s, "ann", "INBOX")
		old := Source{Account: "work", Mailbox: "INBOX", UIDValidity: 1}
		other := Source{Account: "home", Mailbox: "INBOX", UIDValidity: 1}
		mapUIDs(t, ctx, s, m.ID, old, 1, 2, 3)
		mapUIDs(t, ctx, s, m.ID, other, 1)
		must(t, s.SetKeywords(ctx, m.ID, 2, []string{"x"}))

		// The upstream's UIDVALIDITY changed to 2. Mapping at the new one
		// leaves the old rows alone.
		renewed := Source{Account: "work", Mailbox: "INBOX", UIDValidity: 2}
		if got := mapUIDs(t, ctx, s, m.ID, renewed, 1); !slices.Equal(got, []uint32{5}) {
			t.Errorf("map at the new UIDVALIDITY = %v", got)
		}
		if msgs, _ := s.SourceMessages(ctx, m.ID, "work", "INBOX"); len(msgs) != 4 {
			t.Errorf("before ForgetSource: %v", msgs)
		}
		gone, err := s.ForgetSource(ctx, m.ID, "work", "INBOX", 2)
		must(t, err)
		if !slices.Equal(gone, []uint32{1, 2, 3}) {
			t.Errorf("ForgetSource = %v", gone)
		}
		if again, err := s.ForgetSource(ctx, m.ID, "work", "INBOX", 2); err != nil || len(again) != 0 {
			t.Errorf("ForgetSource again = %v, %v", again, err)
		}
		// Re-adding gives new vuids, all above the old UIDNEXT.
		if got := mapUIDs(t, ctx, s, m.ID, renewed, 1, 2, 3); !slices.Equal(got, []uint32{5, 6, 7}) {
			t.Errorf("re-added = %v, want [5 6 7]", got)
		}
		// The old UIDVALIDITY's messages come back as new ones too.
		if got := mapUIDs(t, ctx, s, m.ID, old, 1); !slices.Equal(got, []uint32{8}) {
			t.Errorf("old source again = %v, want [8]", got)
		}
		kw, err := s.Keywords(ctx, m.ID, []uint32{2})
		must(t, err)
		if len(kw) != 0 {
			t.Errorf("keywords of a forgotten message: %v", kw)
		}
		// keep = 0 forgets the whole upstream mailbox.
		gone, err = s.ForgetSource(ctx, m.ID, "work", "INBOX", 0)
		must(t, err)
		if !slices.Equal(gone, []uint32{5, 6, 7, 8}) {
			t.Errorf("ForgetSource(0) = %v", gone)
		}
		msgs, err := s.VMessages(ctx, m.ID)
		must(t, err)
		if want := []VMessage{{4, "home", "INBOX", 1, 1}}; !slices.Equal(msgs, want) {
			t.Errorf("left = %v, want %v", msgs, want)
		}
		if m2 := mustVMailbox(t, ctx, s, "ann", "INBOX"); m2.UIDNext != 9 {
			t.Errorf("UIDNEXT = %d, want 9", m2.UIDNext)
		}
	})
}

func TestRemoveVUIDs(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		m := mustVMailbox(t, ctx, s, "ann", "INBOX")
		src := Source{Account: "work", Mailbox: "INBOX", UIDValidity: 1}
		mapUIDs(t, ctx, s, m.ID, src, 1, 2, 3, 4)
		must(t, s.SetKeywords(ctx, m.ID, 3, []string{"x"}))
		must(t, s.RemoveVUIDs(ctx, m.ID, []uint32{3, 1, 99}))
		must(t, s.RemoveVUIDs(ctx, m.ID, nil))
		msgs, err := s.VMessages(ctx, m.ID)
		must(t, err)
		if !slices.Equal(vuidsOf(msgs), []uint32{2, 4}) {
			t.Errorf("after RemoveVUIDs: %v", msgs)
		}
		if kw, _ := s.Keywords(ctx, m.ID, []uint32{3}); len(kw) != 0 {
			t.Errorf("keywords of a removed message: %v", kw)
		}
		// An expunged message that shows up again (it cannot, upstream, but
		// the store must not reuse its vuid anyway) gets a new vuid.
		if got := mapUIDs(t, ctx, s, m.ID, src, 3); !slices.Equal(got, []uint32{5}) {
			t.Errorf("re-mapped after removal = %v", got)
		}
	})
}

func TestKeywords(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		m := mustVMailbox(t, ctx, s, "ann", "INBOX")
		mapUIDs(t, ctx, s, m.ID, Source{Account: "work", Mailbox: "INBOX", UIDValidity: 1}, 1, 2, 3)
		must(t, s.SetKeywords(ctx, m.ID, 1, []string{"b", "a", "b", "$Important"}))
		must(t, s.SetKeywords(ctx, m.ID, 2, []string{"x"}))
		must(t, s.SetKeywords(ctx, m.ID, 2, []string{"y", "z"}))
		must(t, s.SetKeywords(ctx, m.ID, 3, []string{"gone"}))
		must(t, s.SetKeywords(ctx, m.ID, 3, nil))
		got, err := s.Keywords(ctx, m.ID, []uint32{1, 2, 3, 99})
		must(t, err)
		want := map[uint32][]string{1: {"$Important", "a", "b"}, 2: {"y", "z"}}
		if len(got) != len(want) || !slices.Equal(got[1], want[1]) || !slices.Equal(got[2], want[2]) {
			t.Errorf("Keywords = %v, want %v", got, want)
		}
		if got, err := s.Keywords(ctx, m.ID, nil); err != nil || len(got) != 0 {
			t.Errorf("Keywords of none = %v, %v", got, err)
		}
		all, err := s.MailboxKeywords(ctx, m.ID)
		must(t, err)
		if len(all) != len(want) || !slices.Equal(all[1], want[1]) || !slices.Equal(all[2], want[2]) {
			t.Errorf("MailboxKeywords = %v, want %v", all, want)
		}
		if _, err := s.MailboxKeywords(ctx, m.ID+1000); !errors.Is(err, ErrNotFound) {
			t.Errorf("MailboxKeywords of an unknown mailbox: %v", err)
		}
		if err := s.SetKeywords(ctx, m.ID, 99, []string{"x"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetKeywords of an unknown vuid: %v", err)
		}
	})
}
