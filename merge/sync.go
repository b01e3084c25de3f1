package merge

// This file brings the store's UID map of one source (an account's
// upstream mailbox) up to date with the upstream, and reports what
// changed, so that the hub can queue EXISTS and EXPUNGE for its sessions.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/emersion/go-imap/v2"

	"imapproxy/store"
	"imapproxy/upstream"
)

// SourceMessage is one upstream message of a source as a virtual mailbox
// sees it.
type SourceMessage struct {
	VUID  uint32
	UID   imap.UID
	Flags []imap.Flag
}

// SyncResult is the state of one source after SyncSource.
type SyncResult struct {
	// UIDValidity is the upstream mailbox's UIDVALIDITY.
	UIDValidity uint32
	// Messages is every message of the source now, by VUID.
	Messages []SourceMessage
	// Added are the vuids new since the last sync of this source,
	// ascending: the source had no row with them before.
	Added []uint32
	// Removed are the vuids gone, ascending: expunged upstream, or
	// dropped because the upstream's UIDVALIDITY changed (their messages
	// then come back in Added with new vuids).
	Removed []uint32
	// PermanentFlags is what the upstream's EXAMINE reported.
	PermanentFlags []imap.Flag
	// Mark is what the upstream's EXAMINE reported, for the next sync.
	Mark SyncMark
	// Unchanged: nothing changed since the mark SyncSourceSince was
	// given; Messages, Added and Removed are empty and the caller's state
	// of the source stands.
	Unchanged bool
	// FlagsOnly: since the given mark only flags changed (the same UIDs
	// are there); Changed has the messages with their new flags, and
	// Messages, Added and Removed are empty.
	FlagsOnly bool
	Changed   []upstream.FlagsItem
}

// SyncMark is what an upstream mailbox's EXAMINE reported at a sync.
// With CONDSTORE, an equal mark later means that nothing changed, and a
// mark that differs only in HIGHESTMODSEQ that only flags changed: UIDs
// only grow (UIDNEXT), and an expunge lowers the message count unless a
// new message (a higher UIDNEXT) makes up for it.
type SyncMark struct {
	UIDValidity   uint32
	UIDNext       uint32
	Messages      uint32
	HighestModSeq uint64
}

// usable reports whether the mark can tell changes apart (the upstream
// sent UIDNEXT and HIGHESTMODSEQ).
func (m SyncMark) usable() bool { return m.UIDValidity != 0 && m.UIDNext != 0 && m.HighestModSeq != 0 }

// SyncSource brings the store's rows of one source of virtual mailbox vm
// (account's upstream mailbox, on c) up to date and returns its state.
//
// It EXAMINEs the mailbox (read-only, so that syncing never sets \Seen
// nor expunges), reads its UIDVALIDITY, lists every UID with its flags
// (one UID FETCH 1:* (UID FLAGS), skipped for an empty mailbox), drops
// the source's rows of another UIDVALIDITY (store.ForgetSource; their
// vuids are Removed), maps all current UIDs in one store transaction
// (store.MapUIDs; vuids the source had no row for are Added) and removes
// the rows of UIDs the upstream no longer has (store.RemoveVUIDs; also
// Removed).
//
// c is left with the mailbox selected read-only. Upstream failures are
// the Client's errors (*upstream.Error, or *imap.Error for a NO such as a
// missing mailbox); the caller Puts c back to its pool either way.
//
// Concurrent SyncSource calls on the same source are safe for the store
// (MapUIDs never gives a message two vuids) but may both report the same
// vuid as Added or Removed: callers serialize the syncs of a source
// (merge mode's hub does) when they rely on the difference.
func SyncSource(ctx context.Context, st store.Store, vm store.VMailbox, account string, c *upstream.Client, mailbox string) (SyncResult, error) {
	return SyncSourceSince(ctx, st, vm, account, c, mailbox, nil)
}

// SyncSourceSince is SyncSource for a caller that holds the source's
// state as of the sync that returned the mark since: where the upstream
// has CONDSTORE and the mailbox is unchanged it answers Unchanged after
// one EXAMINE, and where only flags changed FlagsOnly with the changes
// (UID FETCH 1:* (FLAGS) (CHANGEDSINCE modseq)). Otherwise, or with a
// nil since, it does a full sync.
func SyncSourceSince(ctx context.Context, st store.Store, vm store.VMailbox, account string, c *upstream.Client, mailbox string, since *SyncMark) (SyncResult, error) {
	var res SyncResult
	sel, err := c.Examine(ctx, mailbox)
	if err != nil {
		return res, fmt.Errorf("merge: sync %s/%s: %w", account, mailbox, err)
	}
	if sel.UIDValidity == 0 {
		return res, fmt.Errorf("merge: sync %s/%s: %w", account, mailbox, errNoUIDValidity)
	}
	res.UIDValidity = sel.UIDValidity
	res.PermanentFlags = sel.PermanentFlags
	res.Mark = SyncMark{UIDValidity: sel.UIDValidity, UIDNext: uint32(sel.UIDNext), Messages: sel.NumMessages, HighestModSeq: sel.HighestModSeq}
	if since != nil && since.usable() && res.Mark.usable() {
		switch {
		case res.Mark == *since:
			res.Unchanged = true
			return res, nil
		case res.Mark.UIDValidity == since.UIDValidity && res.Mark.UIDNext == since.UIDNext &&
			res.Mark.Messages == since.Messages && res.Mark.HighestModSeq > since.HighestModSeq:
			all := imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}} // 1:*
			res.Changed, err = c.FetchFlagsSince(ctx, all, since.HighestModSeq)
			if err != nil {
				return res, fmt.Errorf("merge: sync %s/%s: %w", account, mailbox, err)
			}
			res.FlagsOnly = true
			return res, nil
		}
	}

	var items []upstream.FlagsItem
	if sel.NumMessages > 0 {
		all := imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}} // 1:*
		items, err = c.FetchFlags(ctx, all)
		if err != nil {
			return res, fmt.Errorf("merge: sync %s/%s: %w", account, mailbox, err)
		}
	}

	before, err := st.SourceMessages(ctx, vm.ID, account, mailbox)
	if err != nil {
		return res, fmt.Errorf("merge: sync %s/%s: %w", account, mailbox, err)
	}
	// A row of a UID at or above the horizon was mapped after the
	// listing began (a session's APPEND or COPY, from APPENDUID or
	// COPYUID): the listing cannot tell whether it is gone, and treating
	// it as gone would give the message a second vuid. The next sync
	// judges it. Without UIDNEXT the horizon is above the highest UID
	// listed (so an expunged highest message waits for the next one).
	horizon := res.Mark.UIDNext
	if horizon == 0 {
		horizon = 1
		if n := len(items); n > 0 {
			horizon = uint32(items[n-1].UID) + 1
		}
	}
	known := make(map[uint32]uint32, len(before)) // vuid → upstream UID, at this UIDVALIDITY
	stale := false
	for _, m := range before {
		switch {
		case m.UIDValidity != res.UIDValidity:
			stale = true
		case m.UID < horizon:
			known[m.VUID] = m.UID
		}
	}
	if stale {
		forgotten, err := st.ForgetSource(ctx, vm.ID, account, mailbox, res.UIDValidity)
		if err != nil {
			return res, fmt.Errorf("merge: sync %s/%s: %w", account, mailbox, err)
		}
		res.Removed = append(res.Removed, forgotten...)
	}

	// FetchFlags returns the items sorted by UID without duplicates.
	uids := make([]uint32, len(items))
	for i, it := range items {
		uids[i] = uint32(it.UID)
	}
	var vuids []uint32
	if len(uids) > 0 {
		src := store.Source{Account: account, Mailbox: mailbox, UIDValidity: res.UIDValidity}
		vuids, err = st.MapUIDs(ctx, vm.ID, src, uids)
		if err != nil {
			return res, fmt.Errorf("merge: sync %s/%s: %w", account, mailbox, err)
		}
		if len(vuids) != len(uids) {
			return res, fmt.Errorf("merge: sync %s/%s: store mapped %d of %d UIDs", account, mailbox, len(vuids), len(uids))
		}
	}

	res.Messages = make([]SourceMessage, len(items))
	for i, it := range items {
		v := vuids[i]
		res.Messages[i] = SourceMessage{VUID: v, UID: it.UID, Flags: it.Flags}
		if _, ok := known[v]; ok {
			delete(known, v) // still there; what remains is gone
		} else {
			res.Added = append(res.Added, v)
		}
	}
	if len(known) > 0 {
		gone := make([]uint32, 0, len(known))
		for v := range known {
			gone = append(gone, v)
		}
		slices.Sort(gone)
		if err := st.RemoveVUIDs(ctx, vm.ID, gone); err != nil {
			return res, fmt.Errorf("merge: sync %s/%s: %w", account, mailbox, err)
		}
		res.Removed = append(res.Removed, gone...)
	}

	slices.SortFunc(res.Messages, func(a, b SourceMessage) int { return cmp.Compare(a.VUID, b.VUID) })
	slices.Sort(res.Added)
	slices.Sort(res.Removed)
	return res, nil
}

// errNoUIDValidity: the upstream's EXAMINE reported no UIDVALIDITY, so its
// UIDs cannot be kept.
var errNoUIDValidity = errors.New("upstream reported no UIDVALIDITY")
