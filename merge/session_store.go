package merge

// This file holds the commands that change messages of the selected
// mailbox: STORE, EXPUNGE, COPY and MOVE. All of them refuse an
// EXAMINEd mailbox (COPY, which only reads it, excepted).

import (
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
)

// Store changes flags upstream (UID STORE per source; keywords a source
// cannot keep go to the store instead, see session_keywords.go), reads
// them back, waits for the hub's re-sync of the sources (so that no
// older update of the hub's can take the flags back afterwards) and
// writes them as FETCH FLAGS unless Silent.
func (s *Session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	sel, err := s.selected()
	if err != nil {
		return err
	}
	if err := sel.writable(); err != nil {
		return err
	}
	vuids, err := sel.resolve(numSet)
	if err != nil {
		return err
	}
	st := &imap.StoreFlags{Op: flags.Op, Silent: true}
	for _, f := range flags.Flags {
		if !strings.EqualFold(string(f), `\Recent`) {
			st.Flags = append(st.Flags, f)
		}
	}
	cs := s.conns()
	defer cs.release()
	changed := make(map[VUID]bool)
	groups := sel.groupBySource(vuids)
	for _, g := range groups {
		c, data, err := cs.get(g.key.Account, g.key.Mailbox, false)
		if err != nil {
			return s.clientErr("store", sel.name, err)
		}
		up, kws := splitFlags(st.Flags, data.PermanentFlags)
		kc, err := s.storeKept(sel, g.vuids, st.Op, kws, st.Flags)
		if err != nil {
			return s.clientErr("store", sel.name, err)
		}
		for v := range kc {
			changed[v] = true
		}
		if len(up) == 0 && st.Op != imap.StoreFlagsSet {
			continue
		}
		ust := &imap.StoreFlags{Op: st.Op, Silent: true, Flags: up}
		err = c.Do(s.ctx, func(ic *imapclient.Client) error {
			return ic.Store(g.uidSet(), ust, nil).Close()
		})
		if err != nil {
			return s.clientErr("store", sel.name, err)
		}
		items, err := c.FetchFlags(s.ctx, g.uidSet())
		if err != nil {
			return s.clientErr("store", sel.name, err)
		}
		byUID := make(map[imap.UID]VUID, len(g.uids))
		for i, u := range g.uids {
			byUID[u] = g.vuids[i]
		}
		for _, it := range items {
			v, ok := byUID[it.UID]
			if !ok {
				continue
			}
			sel.setFlags(v, it.Flags)
			changed[v] = true
		}
	}
	// A hub update queued before the STORE would take the session's
	// flags back: a sync after it puts the new ones behind it.
	cs.release()
	keys := make([]srcKey, len(groups))
	for i, g := range groups {
		keys[i] = g.key
	}
	s.resync(keys)
	if flags.Silent {
		return nil
	}
	for _, v := range vuids {
		seq, ok := sel.snap.Seq(v)
		if !ok || !changed[v] {
			continue
		}
		rw := w.CreateMessage(seq)
		rw.WriteUID(imap.UID(v))
		rw.WriteFlags(sel.flagsOf(v))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// Expunge removes the selection's \Deleted messages (of uids only, if
// given) upstream, as the upstream's flags say: UID EXPUNGE of the
// selection's UIDs of each source where the upstream has UIDPLUS, else a
// plain EXPUNGE, which removes every \Deleted message of the upstream
// mailbox (as EXPUNGE of the mailbox would anyway, but not for UID
// EXPUNGE: then NO [CANNOT]). The sources are re-synced and the
// removals written. CLOSE (imapserver's Expunge with a writer that
// writes nothing) of an EXAMINEd mailbox expunges nothing and succeeds.
func (s *Session) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	sel, err := s.selected()
	if err != nil {
		return err
	}
	if sel.readOnly && uids == nil && w != nil && *w == (imapserver.ExpungeWriter{}) {
		return nil // CLOSE of an EXAMINEd mailbox: nothing to expunge
	}
	if err := sel.writable(); err != nil {
		return err
	}
	vuids := sel.snap.VUIDs()
	if uids != nil {
		if vuids, err = sel.resolve(*uids); err != nil {
			return err
		}
	}
	// The upstream decides what is \Deleted: the session's flags may lag
	// behind (a hub update may be older than the session's last STORE).
	cs := s.conns()
	defer cs.release()
	var keys []srcKey
	for _, g := range sel.groupBySource(vuids) {
		c, _, err := cs.get(g.key.Account, g.key.Mailbox, false)
		if err != nil {
			return s.clientErr("expunge", sel.name, err)
		}
		if c.Caps().Has(imap.CapUIDPlus) || c.Caps().Has(imap.CapIMAP4rev2) {
			_, err = c.UIDExpunge(s.ctx, g.uidSet())
		} else if uids != nil {
			err = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "UID EXPUNGE is not possible on one of the accounts"}
		} else {
			err = c.Do(s.ctx, func(ic *imapclient.Client) error { return ic.Expunge().Close() })
		}
		if err != nil {
			return s.clientErr("expunge", sel.name, err)
		}
		keys = append(keys, g.key)
	}
	if len(keys) > 0 {
		cs.release()
		s.resync(keys)
	}
	s.absorb()
	return s.writeExpunges(w.WriteExpunge)
}

// Copy copies messages: within one account with the upstream's UID COPY
// per source, across accounts with the transfer engine (transfer.go).
func (s *Session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	data, _, err := s.copyMove(numSet, dest, false)
	return data, err
}

// Move moves messages (within one account with the upstream's UID MOVE
// per source, across accounts with the transfer engine), then writes
// COPYUID and the EXPUNGEs.
func (s *Session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	sel, err := s.selected()
	if err != nil {
		return err
	}
	if err := sel.writable(); err != nil {
		return err
	}
	data, keys, err := s.copyMove(numSet, dest, true)
	if err != nil {
		return err
	}
	if err := w.WriteCopyData(data); err != nil {
		return err
	}
	if len(keys) > 0 {
		s.resync(keys)
	}
	s.absorb()
	return s.writeExpunges(w.WriteExpunge)
}

// copyMove runs COPY or MOVE and returns the COPYUID data in virtual
// UIDs (nil when an upstream gave none) and the sources it moved from.
// Sources in the target's account use the upstream's COPY/MOVE; the others
// go through the transfer engine, which streams each message and, for
// MOVE, deletes it from its source only once the target has it. Keywords
// the proxy keeps go with the copies when COPYUID names them.
func (s *Session) copyMove(numSet imap.NumSet, dest string, move bool) (*imap.CopyData, []srcKey, error) {
	op := "copy"
	if move {
		op = "move"
	}
	sel, err := s.selected()
	if err != nil {
		return nil, nil, err
	}
	vuids, err := sel.resolve(numSet)
	if err != nil {
		return nil, nil, err
	}
	t, err := s.writeTarget(dest)
	if err != nil {
		return nil, nil, s.clientErr(op, dest, err)
	}
	// Each account's messages go to its own source of a unified folder
	// where it has one, else to the target's (another account's: a
	// transfer).
	var parts []*copyPart
	for _, g := range sel.groupBySource(vuids) {
		dt := t.forAccount(g.key.Account)
		i := slices.IndexFunc(parts, func(p *copyPart) bool { return p.t.src == dt.src })
		if i < 0 {
			i = len(parts)
			parts = append(parts, &copyPart{t: dt})
		}
		p := parts[i]
		if g.key.Account == dt.src.Account {
			p.local = append(p.local, g)
		} else {
			p.cross = append(p.cross, g)
		}
	}
	var keys []srcKey
	for _, p := range parts {
		if len(p.local) > 0 {
			moved, err := s.copyMoveLocal(p.local, p.t, move, &p.cu)
			// The target's watcher may report the copies only later (and
			// the hub would take the source as current meanwhile): a
			// SELECT right after must see what COPYUID named.
			s.hub.noteChange(srcKey(p.t.src))
			keys = append(keys, moved...)
			if err != nil {
				return nil, keys, s.clientErr(op, dest, err)
			}
		}
		for _, g := range p.cross {
			moved, err := s.transferGroup(sel, g, p.t, move, &p.cu)
			if moved {
				keys = append(keys, g.key)
			}
			if err != nil {
				return nil, keys, s.clientErr(op, dest, err)
			}
		}
	}
	return s.copyData(sel, op, parts), keys, nil
}

// copyPart is the part of a COPY or MOVE that goes to one target source:
// the groups in its account (the upstream's own COPY or MOVE) and in
// others (transfers), and the UIDs they got.
type copyPart struct {
	t            target
	local, cross []*sourceGroup
	cu           copyUIDs
}

// copyUIDs gathers a COPY's or MOVE's pairs of source vuid and target
// upstream UID for COPYUID; complete is false once a source gave none.
type copyUIDs struct {
	srcV        []VUID
	dstU        []uint32
	uidValidity uint32
	incomplete  bool
	// kept are keywords the target's upstream cannot store, by source
	// vuid: the proxy keeps them for the copies.
	kept map[VUID][]imap.Flag
}

// add records pairs at uidValidity.
func (cu *copyUIDs) add(uidValidity uint32, srcV []VUID, dstU []uint32) {
	if cu.uidValidity != 0 && cu.uidValidity != uidValidity {
		cu.incomplete = true
		return
	}
	cu.uidValidity = uidValidity
	cu.srcV = append(cu.srcV, srcV...)
	cu.dstU = append(cu.dstU, dstU...)
}

// copyMoveLocal copies or moves groups within the target's account with
// the upstream's UID COPY or UID MOVE, and returns the sources moved
// from.
func (s *Session) copyMoveLocal(groups []*sourceGroup, t target, move bool, cu *copyUIDs) ([]srcKey, error) {
	cs := s.conns()
	defer cs.release()
	var keys []srcKey
	for _, g := range groups {
		c, _, err := cs.get(g.key.Account, g.key.Mailbox, !move)
		if err != nil {
			return keys, err
		}
		caps := c.Caps()
		if move && !caps.Has(imap.CapMove) && !caps.Has(imap.CapUIDPlus) && !caps.Has(imap.CapIMAP4rev2) {
			// imapclient's fallback (COPY, STORE \Deleted, EXPUNGE) would
			// expunge every \Deleted message of the folder, not only these.
			return keys, errCannotMove
		}
		var cd *imap.CopyData
		err = c.Do(s.ctx, func(ic *imapclient.Client) error {
			if move {
				md, err := ic.Move(g.uidSet(), t.src.Mailbox).Wait()
				if err == nil && md != nil && md.UIDValidity != 0 {
					su, _ := md.SourceUIDs.(imap.UIDSet)
					du, _ := md.DestUIDs.(imap.UIDSet)
					cd = &imap.CopyData{UIDValidity: md.UIDValidity, SourceUIDs: su, DestUIDs: du}
				}
				return err
			}
			var err error
			cd, err = ic.Copy(g.uidSet(), t.src.Mailbox).Wait()
			return err
		})
		if err != nil {
			return keys, err
		}
		if move {
			keys = append(keys, g.key)
		}
		if cd == nil || cd.UIDValidity == 0 {
			cu.incomplete = true
			continue
		}
		src, ok1 := cd.SourceUIDs.Nums()
		dst, ok2 := cd.DestUIDs.Nums()
		if !ok1 || !ok2 || len(src) != len(dst) {
			cu.incomplete = true
			continue
		}
		byUID := make(map[imap.UID]VUID, len(g.uids))
		for i, u := range g.uids {
			byUID[u] = g.vuids[i]
		}
		srcV := make([]VUID, len(src))
		dstU := make([]uint32, len(dst))
		for i, u := range src {
			srcV[i], dstU[i] = byUID[u], uint32(dst[i])
		}
		cu.add(cd.UIDValidity, srcV, dstU)
	}
	return keys, nil
}

// copyData maps each part's target UIDs to vuids of the target's virtual
// mailbox (one for all parts), takes the kept keywords along, and returns
// the COPYUID data: nil when a part is incomplete, or when the copies'
// vuids do not ascend with the originals' (messages of several sources
// copied by several commands), since COPYUID pairs the two sets in
// ascending order.
func (s *Session) copyData(sel *selection, op string, parts []*copyPart) *imap.CopyData {
	type pair struct{ src, dst uint32 }
	var pairs []pair
	var uidValidity uint32
	for _, p := range parts {
		cu := &p.cu
		if cu.incomplete || len(cu.dstU) == 0 {
			return nil
		}
		vm, dstV, err := s.mapNew(p.t, cu.uidValidity, cu.dstU)
		if err != nil || len(dstV) != len(cu.srcV) {
			s.log.Warn(op+": no virtual UIDs for COPYUID", "mailbox", p.t.storeName, "err", err)
			return nil
		}
		s.copyKept(sel, vm.ID, cu.srcV, dstV)
		s.keepTransferred(sel, vm.ID, cu, dstV)
		uidValidity = vm.UIDValidity
		for i := range cu.srcV {
			pairs = append(pairs, pair{cu.srcV[i], dstV[i]})
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int { return cmpVUID(a.src, b.src) })
	data := imap.CopyData{UIDValidity: uidValidity}
	for i, p := range pairs {
		if i > 0 && p.dst <= pairs[i-1].dst {
			s.log.Debug(op+": copies out of order, no COPYUID", "mailbox", parts[0].t.storeName)
			return nil
		}
		data.SourceUIDs.AddNum(imap.UID(p.src))
		data.DestUIDs.AddNum(imap.UID(p.dst))
	}
	if uidValidity == 0 {
		return nil
	}
	return &data
}
