package merge

// This file holds a session's handle on its hub, the queue of updates
// the hub fills for it, and the flag arithmetic of views and updates.

import (
	"cmp"
	"slices"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
)

// maxPendingUpdates bounds a session's queue: past it the queue is
// collapsed into one Update, so that a slow session never makes the hub
// wait nor grows without bound.
const maxPendingUpdates = 32

// Subscriber is one session's handle on its hub.
type Subscriber struct {
	hub    *Hub
	signal chan struct{} // cap 1: updates are pending

	// pending is filled by the hub goroutine and emptied by the session:
	// a mutex rather than a channel so that the hub never waits for a
	// slow session and a session takes everything at once.
	mu      sync.Mutex
	pending []Update
	closed  bool

	// Owned by the hub goroutine.
	mailbox string // selected virtual mailbox, "" for none
	maxSeen uint32 // highest vuid the session has been given
}

func newSubscriber(h *Hub) *Subscriber {
	return &Subscriber{hub: h, signal: make(chan struct{}, 1)}
}

// Updates returns a channel that receives a value when updates are
// pending (or the hub stopped; see Err). Call Take then.
func (s *Subscriber) Updates() <-chan struct{} { return s.signal }

// Take returns the pending updates, oldest first, and clears them.
func (s *Subscriber) Take() []Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending
	s.pending = nil
	return p
}

// Err returns ErrHubClosed once the hub has stopped (Manager.Close): the
// session should end.
func (s *Subscriber) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrHubClosed
	}
	return nil
}

// push queues u, leaving out vuids the session cannot be told about any
// more (at or below the highest it has: vuids only grow for a client).
// Hub goroutine only.
func (s *Subscriber) push(u Update) {
	added := u.Added[:0:0]
	for _, m := range u.Added {
		if m.VUID > s.maxSeen {
			added = append(added, m)
		}
	}
	u.Added = added
	if n := len(added); n > 0 {
		s.maxSeen = added[n-1].VUID
	}
	if len(u.Added)+len(u.Removed)+len(u.Flags) == 0 {
		return
	}
	s.mu.Lock()
	s.pending = append(s.pending, u)
	if len(s.pending) > maxPendingUpdates {
		s.pending = []Update{collapse(s.pending)}
	}
	s.mu.Unlock()
	s.notify()
}

// clear drops the pending updates (a new selection).
func (s *Subscriber) clear() {
	s.mu.Lock()
	s.pending = nil
	s.mu.Unlock()
}

// close marks the hub stopped and wakes the session.
func (s *Subscriber) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.notify()
}

func (s *Subscriber) notify() {
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// collapse merges updates of one mailbox, oldest first, into one with
// the same effect: a message added then removed is in neither list, and
// the latest flags win.
func collapse(us []Update) Update {
	added := make(map[uint32]ViewMessage)
	removed := make(map[uint32]bool)
	flags := make(map[uint32]ViewMessage)
	for _, u := range us {
		for _, v := range u.Removed {
			if _, ok := added[v]; ok {
				delete(added, v)
			} else {
				removed[v] = true
			}
			delete(flags, v)
		}
		for _, m := range u.Added {
			added[m.VUID] = m
		}
		for _, m := range u.Flags {
			if a, ok := added[m.VUID]; ok {
				a.Flags = m.Flags
				added[m.VUID] = a
			} else {
				flags[m.VUID] = m
			}
		}
	}
	out := Update{Mailbox: us[len(us)-1].Mailbox}
	for _, m := range added {
		out.Added = append(out.Added, m)
	}
	for v := range removed {
		out.Removed = append(out.Removed, v)
	}
	for _, m := range flags {
		out.Flags = append(out.Flags, m)
	}
	sortUpdate(&out)
	return out
}

// sortUpdate sorts an update's lists by vuid.
func sortUpdate(u *Update) {
	byVUID := func(a, b ViewMessage) int { return cmpVUID(a.VUID, b.VUID) }
	slices.SortFunc(u.Added, byVUID)
	slices.SortFunc(u.Flags, byVUID)
	slices.Sort(u.Removed)
}

func cmpVUID(a, b uint32) int { return cmp.Compare(a, b) }

// sameFlags compares two flag lists as sets (flags are case-insensitive).
func sameFlags(a, b []imap.Flag) bool {
	return slices.Equal(normFlags(a), normFlags(b))
}

// normFlags returns flags folded, sorted and without duplicates.
func normFlags(fs []imap.Flag) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = strings.ToLower(string(f))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// systemFlags are always in a mailbox's FLAGS.
var systemFlags = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}

// mailboxFlags is a view's FLAGS: the system flags and every flag the
// sources' messages carry or their PERMANENTFLAGS name (SyncSource keeps
// no upstream FLAGS, so these stand for their union).
func mailboxFlags(msgs []ViewMessage, perms [][]imap.Flag) []imap.Flag {
	var out []imap.Flag
	seen := make(map[string]bool)
	add := func(f imap.Flag) {
		k := strings.ToLower(string(f))
		if f == imap.FlagWildcard || f == "" || seen[k] {
			return
		}
		seen[k] = true
		out = append(out, f)
	}
	for _, f := range systemFlags {
		add(f)
	}
	for _, p := range perms {
		for _, f := range p {
			add(f)
		}
	}
	for _, m := range msgs {
		for _, f := range m.Flags {
			if !strings.EqualFold(string(f), `\Recent`) {
				add(f)
			}
		}
	}
	return out
}

// permanentFlags is the intersection of the sources' PERMANENTFLAGS: a
// flag every source can keep, a keyword counting as kept where a source
// has \*, and \* only when every source has it.
func permanentFlags(perms [][]imap.Flag) []imap.Flag {
	if len(perms) == 0 {
		return nil
	}
	var out []imap.Flag
	seen := make(map[string]bool)
	for _, p := range perms {
		for _, f := range p {
			k := strings.ToLower(string(f))
			if seen[k] {
				continue
			}
			seen[k] = true
			if allKeep(perms, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

// allKeep reports whether every source's PERMANENTFLAGS keeps f.
func allKeep(perms [][]imap.Flag, f imap.Flag) bool {
	keyword := !strings.HasPrefix(string(f), `\`)
	for _, p := range perms {
		ok := false
		for _, g := range p {
			if strings.EqualFold(string(g), string(f)) || keyword && g == imap.FlagWildcard {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
