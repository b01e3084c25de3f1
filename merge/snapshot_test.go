package merge

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func seqSet(ranges ...[2]uint32) imap.SeqSet {
	var s imap.SeqSet
	for _, r := range ranges {
		s = append(s, imap.SeqRange{Start: r[0], Stop: r[1]})
	}
	return s
}

func uidSet(ranges ...[2]uint32) imap.UIDSet {
	var s imap.UIDSet
	for _, r := range ranges {
		s = append(s, imap.UIDRange{Start: imap.UID(r[0]), Stop: imap.UID(r[1])})
	}
	return s
}

func TestSnapshotResolve(t *testing.T) {
	s := NewSnapshot([]VUID{3, 7, 8, 20, 21})
	const star = 0
	tests := []struct {
		name string
		set  imap.NumSet
		want []VUID
		err  error
	}{
		{"seq one", seqSet([2]uint32{2, 2}), []VUID{7}, nil},
		{"seq range", seqSet([2]uint32{2, 4}), []VUID{7, 8, 20}, nil},
		{"seq reversed", seqSet([2]uint32{4, 2}), []VUID{7, 8, 20}, nil},
		{"seq star", seqSet([2]uint32{star, star}), []VUID{21}, nil},
		{"seq n:*", seqSet([2]uint32{4, star}), []VUID{20, 21}, nil},
		{"seq overlapping", seqSet([2]uint32{1, 2}, [2]uint32{2, 3}), []VUID{3, 7, 8}, nil},
		{"seq beyond", seqSet([2]uint32{5, 6}), nil, ErrBadSeq},
		{"uid one", uidSet([2]uint32{8, 8}), []VUID{8}, nil},
		{"uid gap", uidSet([2]uint32{4, 6}), nil, nil},
		{"uid range", uidSet([2]uint32{5, 20}), []VUID{7, 8, 20}, nil},
		{"uid star", uidSet([2]uint32{star, star}), []VUID{21}, nil},
		{"uid n:* beyond the top still includes the top", uidSet([2]uint32{559, star}), []VUID{21}, nil},
		{"uid unknown", uidSet([2]uint32{100, 200}), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Resolve(tt.set, nil)
			if !errors.Is(err, tt.err) || !slices.Equal(got, tt.want) {
				t.Fatalf("Resolve(%v) = %v, %v; want %v, %v", tt.set, got, err, tt.want, tt.err)
			}
		})
	}
	got, err := s.Resolve(imap.SearchRes(), []VUID{21, 9, 3})
	if err != nil || !slices.Equal(got, []VUID{3, 21}) {
		t.Fatalf("Resolve($) = %v, %v", got, err)
	}
	empty := NewSnapshot(nil)
	if got, err := empty.Resolve(uidSet([2]uint32{1, star}), nil); err != nil || len(got) != 0 {
		t.Fatalf("UID 1:* of an empty mailbox = %v, %v", got, err)
	}
	if _, err := empty.Resolve(seqSet([2]uint32{1, star}), nil); !errors.Is(err, ErrBadSeq) {
		t.Fatalf("seq 1:* of an empty mailbox: %v", err)
	}
}

func TestSnapshotExpungeAndAdd(t *testing.T) {
	s := NewSnapshot([]VUID{3, 7, 8, 20, 21})
	seqs := s.Expunge([]VUID{21, 7, 99, 3})
	// From the highest down: 21 is 5, 7 is 2, 3 is 1.
	if !slices.Equal(seqs, []uint32{5, 2, 1}) || !slices.Equal(s.VUIDs(), []VUID{8, 20}) {
		t.Fatalf("Expunge = %v, left %v", seqs, s.VUIDs())
	}
	if seq, ok := s.Seq(20); !ok || seq != 2 {
		t.Fatalf("Seq(20) = %d, %v", seq, ok)
	}
	if n, err := s.Add([]VUID{30, 25}); err != nil || n != 4 || !slices.Equal(s.VUIDs(), []VUID{8, 20, 25, 30}) {
		t.Fatalf("Add = %d, %v, %v", n, err, s.VUIDs())
	}
	if _, err := s.Add([]VUID{22}); err == nil {
		t.Fatalf("a virtual UID below the highest was accepted")
	}
	if v, ok := s.VUID(4); !ok || v != 30 {
		t.Fatalf("VUID(4) = %d, %v", v, ok)
	}
	if _, ok := s.VUID(5); ok {
		t.Fatalf("VUID beyond the end")
	}
}

// FuzzSnapshot checks that resolving never panics and returns only
// present, ascending, distinct virtual UIDs.
func FuzzSnapshot(f *testing.F) {
	f.Add([]byte{3, 7, 8, 20}, uint32(2), uint32(0), true)
	f.Fuzz(func(t *testing.T, raw []byte, start, stop uint32, uid bool) {
		var vs []VUID
		for _, b := range raw {
			vs = append(vs, VUID(b)+1)
		}
		vs = sortUnique(vs)
		s := NewSnapshot(vs)
		var set imap.NumSet = seqSet([2]uint32{start, stop})
		if uid {
			set = uidSet([2]uint32{start, stop})
		}
		got, err := s.Resolve(set, nil)
		if err != nil {
			return
		}
		for i, v := range got {
			if _, ok := s.Seq(v); !ok || i > 0 && got[i-1] >= v {
				t.Fatalf("Resolve(%v) over %v = %v", set, vs, got)
			}
		}
	})
}

// TestSharedSnapshot: a snapshot over a shared view answers like one
// over its own copy, before and after changes, and never changes the
// shared messages.
func TestSharedSnapshot(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for round := range 200 {
		var msgs []ViewMessage
		v := VUID(0)
		for range rng.IntN(40) {
			v += VUID(1 + rng.IntN(3))
			msgs = append(msgs, ViewMessage{VUID: v})
		}
		orig := slices.Clone(msgs)
		var vuids []VUID
		for _, m := range msgs {
			vuids = append(vuids, m.VUID)
		}
		own, shared := NewSnapshot(vuids), SharedSnapshot(msgs)
		for step := range 6 {
			if own.Len() != shared.Len() || !slices.Equal(own.VUIDs(), shared.VUIDs()) {
				t.Fatalf("round %d step %d: %v vs %v", round, step, own.VUIDs(), shared.VUIDs())
			}
			for q := VUID(0); q <= v+2; q++ {
				s1, ok1 := own.Seq(q)
				s2, ok2 := shared.Seq(q)
				if s1 != s2 || ok1 != ok2 {
					t.Fatalf("round %d: Seq(%d) = %d,%v vs %d,%v", round, q, s1, ok1, s2, ok2)
				}
			}
			for seq := uint32(0); seq <= uint32(own.Len())+1; seq++ {
				v1, ok1 := own.VUID(seq)
				v2, ok2 := shared.VUID(seq)
				if v1 != v2 || ok1 != ok2 {
					t.Fatalf("round %d: VUID(%d) differs", round, seq)
				}
			}
			set := imap.UIDSet{imap.UIDRange{Start: imap.UID(rng.IntN(int(v) + 2)), Stop: 0}}
			r1, _ := own.Resolve(set, nil)
			r2, _ := shared.Resolve(set, nil)
			if !slices.Equal(r1, r2) {
				t.Fatalf("round %d: Resolve(%v) = %v vs %v", round, set, r1, r2)
			}
			if own.Len() > 0 && rng.IntN(2) == 0 {
				gone := []VUID{own.VUIDs()[rng.IntN(own.Len())]}
				if a, b := own.Expunge(gone), shared.Expunge(gone); !slices.Equal(a, b) {
					t.Fatalf("round %d: Expunge = %v vs %v", round, a, b)
				}
			} else {
				v += VUID(1 + rng.IntN(2))
				own.Add([]VUID{v})
				shared.Add([]VUID{v})
			}
		}
		if !slices.EqualFunc(msgs, orig, func(a, b ViewMessage) bool { return a.VUID == b.VUID }) {
			t.Fatalf("round %d: the shared view changed", round)
		}
	}
}
