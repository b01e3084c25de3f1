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
// the session has announced, ascending. Sequence number n is the n-th.
// It is owned by one session and not safe for concurrent use.
//
// A snapshot made by SharedSnapshot reads the VUIDs of a view shared with
// the hub and other sessions, and copies them out only when it first
// changes (Add, Expunge): an idle session of a large mailbox costs no
// memory per message.
type Snapshot struct {
	vuids  []VUID
	shared []ViewMessage // read-only; used while vuids is nil
}

// NewSnapshot returns a snapshot of vuids, which must be ascending.
func NewSnapshot(vuids []VUID) *Snapshot {
	return &Snapshot{vuids: slices.Clone(vuids)}
}

// SharedSnapshot returns a snapshot of msgs' VUIDs (ascending), without
// copying them: msgs must not change.
func SharedSnapshot(msgs []ViewMessage) *Snapshot {
	if len(msgs) == 0 {
		return &Snapshot{vuids: []VUID{}}
	}
	return &Snapshot{shared: msgs}
}

// own copies the shared VUIDs out before a change.
func (s *Snapshot) own() {
	if s.vuids != nil {
		return
	}
	s.vuids = make([]VUID, len(s.shared))
	for i, m := range s.shared {
		s.vuids[i] = m.VUID
	}
	s.shared = nil
}

// at returns the i-th VUID (0-based).
func (s *Snapshot) at(i int) VUID {
	if s.vuids != nil {
		return s.vuids[i]
	}
	return s.shared[i].VUID
}

// Len is the number of messages (EXISTS).
func (s *Snapshot) Len() int {
	if s.vuids != nil {
		return len(s.vuids)
	}
	return len(s.shared)
}

// VUIDs returns the snapshot's virtual UIDs, ascending. The slice must not
// be changed; for a shared snapshot it is a fresh copy.
func (s *Snapshot) VUIDs() []VUID {
	if s.vuids != nil {
		return s.vuids
	}
	out := make([]VUID, len(s.shared))
	for i, m := range s.shared {
		out[i] = m.VUID
	}
	return out
}

// search returns the index of vuid, or where it would be.
func (s *Snapshot) search(vuid VUID) (int, bool) {
	if s.vuids != nil {
		return slices.BinarySearch(s.vuids, vuid)
	}
	return slices.BinarySearchFunc(s.shared, vuid, func(m ViewMessage, v VUID) int { return cmpVUID(m.VUID, v) })
}

// Seq returns the sequence number of vuid, if it is in the snapshot.
func (s *Snapshot) Seq(vuid VUID) (uint32, bool) {
	i, ok := s.search(vuid)
	if !ok {
		return 0, false
	}
	return uint32(i + 1), true
}

// VUID returns the virtual UID of sequence number seq (1-based).
func (s *Snapshot) VUID(seq uint32) (VUID, bool) {
	if seq == 0 || int(seq) > s.Len() {
		return 0, false
	}
	return s.at(int(seq - 1)), true
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
	n := uint32(s.Len())
	var out []VUID
	for _, r := range set {
		start, stop := star(r.Start, n), star(r.Stop, n)
		if start > stop {
			start, stop = stop, start
		}
		if start == 0 || stop > n {
			return nil, ErrBadSeq
		}
		for i := start - 1; i < stop; i++ {
			out = append(out, s.at(int(i)))
		}
	}
	return sortUnique(out), nil
}

func (s *Snapshot) resolveUID(set imap.UIDSet) []VUID {
	var max VUID
	n := s.Len()
	if n > 0 {
		max = s.at(n - 1)
	}
	var out []VUID
	for _, r := range set {
		start, stop := star(uint32(r.Start), max), star(uint32(r.Stop), max)
		if start > stop {
			start, stop = stop, start
		}
		lo, _ := s.search(start)
		for i := lo; i < n && s.at(i) <= stop; i++ {
			out = append(out, s.at(i))
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
	if len(seqs) > 0 {
		s.own()
	}
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
	if n := s.Len(); len(vs) > 0 && n > 0 && vs[0] <= s.at(n-1) {
		return n, errors.New("merge: new virtual UID not above the highest known one")
	}
	if len(vs) == 0 {
		return s.Len(), nil
	}
	s.own()
	s.vuids = append(s.vuids, vs...)
	return len(s.vuids), nil
}
