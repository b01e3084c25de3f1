package merge

// This file holds a session's view of a virtual mailbox. go-imap's own
// MailboxTracker only counts messages and panics on decreases, which a
// proxy whose upstreams expunge at will cannot live with; so each session
// keeps its own snapshot of virtual UIDs and resolves the raw number sets
// the server hands over (with "*" and "$") itself.

import (
	"errors"
	"slices"

	"github.com/emersion/go-imap/v2"
)

// VUID is a virtual UID, the UID a client sees in a virtual mailbox.
type VUID = uint32

// ErrBadSeq is a sequence number beyond the mailbox: the client gets BAD.
var ErrBadSeq = errors.New("merge: message sequence number out of range")

// Snapshot is one session's view of one virtual mailbox: the virtual UIDs
// the session has announced, ascending. Sequence number n is vuids[n-1].
// It is owned by one session and not safe for concurrent use.
type Snapshot struct {
	vuids []VUID
}

// NewSnapshot returns a snapshot of vuids, which must be ascending.
func NewSnapshot(vuids []VUID) *Snapshot {
	return &Snapshot{vuids: slices.Clone(vuids)}
}

// Len is the number of messages (EXISTS).
func (s *Snapshot) Len() int { return len(s.vuids) }

// VUIDs returns the snapshot's virtual UIDs, ascending. The slice must not
// be changed.
func (s *Snapshot) VUIDs() []VUID { return s.vuids }

// Seq returns the sequence number of vuid, if it is in the snapshot.
func (s *Snapshot) Seq(vuid VUID) (uint32, bool) {
	i, ok := slices.BinarySearch(s.vuids, vuid)
	if !ok {
		return 0, false
	}
	return uint32(i + 1), true
}

// VUID returns the virtual UID of sequence number seq (1-based).
func (s *Snapshot) VUID(seq uint32) (VUID, bool) {
	if seq == 0 || int(seq) > len(s.vuids) {
		return 0, false
	}
	return s.vuids[seq-1], true
}

// Resolve returns the virtual UIDs a command's number set names, ascending
// and without duplicates. For a SeqSet, "*" is the last message and a
// number beyond the mailbox is ErrBadSeq. For a UIDSet, "*" is the highest
// UID in the snapshot, a range "n:*" always includes it (RFC 9051 section
// 6.4.8), and UIDs not in the snapshot are left out. searchRes is what "$"
// stands for (the session's last saved SEARCH result).
func (s *Snapshot) Resolve(set imap.NumSet, searchRes []VUID) ([]VUID, error) {
	switch set := set.(type) {
	case imap.SeqSet:
		return s.resolveSeq(set)
	case imap.UIDSet:
		if imap.IsSearchRes(set) {
			return s.present(searchRes), nil
		}
		return s.resolveUID(set), nil
	}
	return nil, errors.New("merge: unknown number set")
}

func (s *Snapshot) resolveSeq(set imap.SeqSet) ([]VUID, error) {
	n := uint32(len(s.vuids))
	var out []VUID
	for _, r := range set {
		start, stop := star(r.Start, n), star(r.Stop, n)
		if start > stop {
			start, stop = stop, start
		}
		if start == 0 || stop > n {
			return nil, ErrBadSeq
		}
		out = append(out, s.vuids[start-1:stop]...)
	}
	return sortUnique(out), nil
}

func (s *Snapshot) resolveUID(set imap.UIDSet) []VUID {
	var max VUID
	if len(s.vuids) > 0 {
		max = s.vuids[len(s.vuids)-1]
	}
	var out []VUID
	for _, r := range set {
		start, stop := star(uint32(r.Start), max), star(uint32(r.Stop), max)
		if start > stop {
			start, stop = stop, start
		}
		lo, _ := slices.BinarySearch(s.vuids, start)
		for i := lo; i < len(s.vuids) && s.vuids[i] <= stop; i++ {
			out = append(out, s.vuids[i])
		}
	}
	return sortUnique(out)
}

// present keeps those of vuids that are in the snapshot.
func (s *Snapshot) present(vuids []VUID) []VUID {
	var out []VUID
	for _, v := range vuids {
		if _, ok := s.Seq(v); ok {
			out = append(out, v)
		}
	}
	return sortUnique(out)
}

// star replaces "*" (0 in go-imap's ranges) with last.
func star(n, last uint32) uint32 {
	if n == 0 {
		return last
	}
	return n
}

func sortUnique(v []VUID) []VUID {
	slices.Sort(v)
	return slices.Compact(v)
}

// Expunge removes vuids from the snapshot and returns the sequence numbers
// to announce, in the order they must be sent: each EXPUNGE renumbers the
// messages after it, so they are given from the highest down, where no
// earlier one shifts a later one.
func (s *Snapshot) Expunge(vuids []VUID) []uint32 {
	var seqs []uint32
	for _, v := range sortUnique(slices.Clone(vuids)) {
		if seq, ok := s.Seq(v); ok {
			seqs = append(seqs, seq)
		}
	}
	slices.Reverse(seqs)
	for _, seq := range seqs {
		s.vuids = slices.Delete(s.vuids, int(seq-1), int(seq))
	}
	return seqs
}

// Add appends new messages, which must all be above the snapshot's highest
// virtual UID (virtual UIDs only grow), and returns the new EXISTS count.
// Virtual UIDs at or below the highest are a broken invariant.
func (s *Snapshot) Add(vuids []VUID) (int, error) {
	vs := sortUnique(slices.Clone(vuids))
	if len(vs) > 0 && len(s.vuids) > 0 && vs[0] <= s.vuids[len(s.vuids)-1] {
		return len(s.vuids), errors.New("merge: new virtual UID not above the highest known one")
	}
	s.vuids = append(s.vuids, vs...)
	return len(s.vuids), nil
}
