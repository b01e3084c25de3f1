package merge

import (
	"context"

	"github.com/emersion/go-imap/v2"
)

// sourceCounts are a source's STATUS counts.
type sourceCounts struct {
	messages, unseen, deleted uint32
}

// add counts a message with flags.
func (c *sourceCounts) add(flags []imap.Flag) {
	c.messages++
	if !hasFlag(flags, imap.FlagSeen) {
		c.unseen++
	}
	if hasFlag(flags, imap.FlagDeleted) {
		c.deleted++
	}
}

// currentCounts returns the STATUS counts of one source of virtual
// mailbox name (store ID vmID) from the hub's state when it is current
// (selected or lingering, watched by an idling watcher since its last
// sync, no change reported): a client's STATUS of every folder then costs
// no upstream command for those.
func (h *Hub) currentCounts(ctx context.Context, name string, vmID int64, key srcKey) (sourceCounts, bool) {
	reply := make(chan countsReply, 1)
	r, err := call(ctx, h, countsEvent{name: name, vmID: vmID, key: key, reply: reply}, reply)
	return r.counts, err == nil && r.ok
}

type countsReply struct {
	counts sourceCounts
	ok     bool
}

// countsEvent asks for currentCounts.
type countsEvent struct {
	name  string
	vmID  int64
	key   srcKey
	reply chan countsReply
}

func (ev countsEvent) apply(s *hubState) {
	vs := s.mailboxes[ev.name]
	if vs == nil || vs.vm.ID != ev.vmID || !s.current(vs, ev.key) {
		ev.reply <- countsReply{}
		return
	}
	var c sourceCounts
	for _, m := range vs.src[ev.key].msgs {
		c.add(m.Flags)
	}
	ev.reply <- countsReply{counts: c, ok: true}
}
