package merge

// This file joins the transfer engine to the session's COPY and MOVE.

import (
	"slices"

	"github.com/emersion/go-imap/v2"

	"imapproxy/store"
)

// transferGroup copies or moves one source group of a session's COPY or
// MOVE into another account's target with the transfer engine, adding the
// pairs for COPYUID to cu. moved says that messages left the source (also
// when err is set: those before the failure did).
func (s *Session) transferGroup(sel *selection, g *sourceGroup, t target, move bool, cu *copyUIDs) (moved bool, err error) {
	kind := store.TransferCopy
	if move {
		kind = store.TransferMove
	}
	req := TransferRequest{
		Kind:           kind,
		SrcAccount:     g.key.Account,
		SrcMailbox:     g.key.Mailbox,
		SrcUIDValidity: sel.validity[g.key],
		UIDs:           g.uids,
		DstAccount:     t.src.Account,
		DstMailbox:     t.src.Mailbox,
	}
	res, err := s.hub.transfers().Run(s.ctx, req)
	moved = move && len(res.Done) > 0
	if len(res.Done) > 0 {
		// The watchers report the change only when the upstreams tell
		// them (Dovecot's IDLE after a second or so): until then the hub
		// would take a watched source as current and a SELECT right after
		// the COPY would miss what COPYUID just answered.
		s.hub.noteChange(srcKey{Account: t.src.Account, Mailbox: t.src.Mailbox})
		if moved {
			s.hub.noteChange(g.key)
		}
	}
	if err != nil {
		return moved, err
	}
	byUID := make(map[imap.UID]VUID, len(g.uids))
	for i, u := range g.uids {
		byUID[u] = g.vuids[i]
	}
	srcV := make([]VUID, 0, len(res.Done))
	dstU := make([]uint32, 0, len(res.Done))
	for _, d := range res.Done {
		if d.DstUID == 0 {
			cu.incomplete = true
			continue
		}
		v := byUID[d.SrcUID]
		if len(d.Kept) > 0 {
			if cu.kept == nil {
				cu.kept = make(map[VUID][]imap.Flag)
			}
			cu.kept[v] = d.Kept
		}
		srcV = append(srcV, v)
		dstU = append(dstU, uint32(d.DstUID))
	}
	cu.add(res.DstUIDValidity, srcV, dstU)
	return moved, nil
}

// keepTransferred keeps, for the copies dstV of cu.srcV in the virtual
// mailbox vmID, the keywords their target upstream could not store
// (together with those the proxy kept for the originals).
func (s *Session) keepTransferred(sel *selection, vmID int64, cu *copyUIDs, dstV []uint32) {
	for i, v := range cu.srcV {
		extra := cu.kept[v]
		if len(extra) == 0 || i >= len(dstV) {
			continue
		}
		all := uniqueFlags(append(slices.Clone(sel.kept[v]), extra...))
		raw := make([]string, len(all))
		for j, k := range all {
			raw[j] = string(k)
		}
		if err := s.hub.st.SetKeywords(s.ctx, vmID, dstV[i], raw); err != nil {
			s.log.Warn("copy: kept keywords lost", "mailbox", sel.name, "vuid", dstV[i], "err", err)
			continue
		}
		if vmID == sel.vmID {
			sel.kept[VUID(dstV[i])] = all
		}
	}
}
