package merge

// This file holds SEARCH: the criteria go to every source of the
// selection as UID SEARCH, with sequence numbers and UIDs translated to
// the source's upstream UIDs, and the results come back as virtual UIDs.

import (
	"math"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
)

// noUID is a UID set that matches no message (the largest UID is never
// given: UIDNEXT would not fit).
var noUID = imap.UIDSet{{Start: math.MaxUint32, Stop: math.MaxUint32}}

// Search runs the search on every source and returns the matches as the
// client asked (sequence numbers or virtual UIDs; ESEARCH MIN, MAX,
// COUNT, ALL; SAVE keeps them for "$").
func (s *Session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (_ *imap.SearchData, err error) {
	sel, err := s.selected()
	if err != nil {
		return nil, err
	}
	if options != nil && options.ReturnSave {
		// A failed SEARCH ... SAVE leaves "$" empty (RFC 5182).
		defer func() {
			if err != nil {
				sel.searchRes = nil
			}
		}()
	}
	cs := s.conns()
	defer cs.release()
	var found []VUID
	for _, g := range sel.groupBySource(sel.snap.VUIDs()) {
		crit, err := sel.translate(criteria, g)
		if err != nil {
			return nil, err
		}
		c, _, err := cs.get(g.key.Account, g.key.Mailbox, true)
		if err != nil {
			return nil, s.clientErr("search", sel.name, err)
		}
		var sd *imap.SearchData
		err = c.Do(s.ctx, func(ic *imapclient.Client) error {
			var err error
			sd, err = ic.UIDSearch(&crit, nil).Wait()
			return err
		})
		if err != nil {
			return nil, s.clientErr("search", sel.name, err)
		}
		byUID := make(map[imap.UID]VUID, len(g.uids))
		for i, u := range g.uids {
			byUID[u] = g.vuids[i]
		}
		for _, u := range sd.AllUIDs() {
			if v, ok := byUID[u]; ok {
				found = append(found, v)
			}
		}
	}
	found = sortUnique(found)
	if options != nil && options.ReturnSave {
		sel.searchRes = slices.Clone(found)
	}
	data := &imap.SearchData{Count: uint32(len(found))}
	var seqs imap.SeqSet
	var uids imap.UIDSet
	for _, v := range found {
		num := v
		if kind == imapserver.NumKindSeq {
			seq, _ := sel.snap.Seq(v)
			num = seq
			seqs.AddNum(seq)
		} else {
			uids.AddNum(imap.UID(v))
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		data.Max = max(data.Max, num)
	}
	if kind == imapserver.NumKindSeq {
		data.All = seqs
	} else {
		data.All = uids
	}
	return data, nil
}

// translate returns criteria for one source: sequence number and UID
// sets become the source's upstream UIDs, in Not and Or too; keywords
// the proxy keeps are matched by UID (keptSearch); the rest passes as it
// is.
func (sel *selection) translate(c *imap.SearchCriteria, g *sourceGroup) (imap.SearchCriteria, error) {
	out := *c
	out.SeqNum, out.UID, out.Not, out.Or = nil, nil, nil, nil
	up := make(map[VUID]imap.UID, len(g.vuids))
	for i, v := range g.vuids {
		up[v] = g.uids[i]
	}
	toUpstream := func(vs []VUID) imap.UIDSet {
		var set imap.UIDSet
		for _, v := range vs {
			if u, ok := up[v]; ok {
				set.AddNum(u)
			}
		}
		if len(set) == 0 {
			return noUID
		}
		return set
	}
	for _, ss := range c.SeqNum {
		vs, err := sel.resolve(ss)
		if err != nil {
			return out, err
		}
		out.UID = append(out.UID, toUpstream(vs))
	}
	for _, us := range c.UID {
		vs, err := sel.resolve(us)
		if err != nil {
			return out, err
		}
		out.UID = append(out.UID, toUpstream(vs))
	}
	for i := range c.Not {
		n, err := sel.translate(&c.Not[i], g)
		if err != nil {
			return out, err
		}
		out.Not = append(out.Not, n)
	}
	for _, pair := range c.Or {
		a, err := sel.translate(&pair[0], g)
		if err != nil {
			return out, err
		}
		b, err := sel.translate(&pair[1], g)
		if err != nil {
			return out, err
		}
		out.Or = append(out.Or, [2]imap.SearchCriteria{a, b})
	}
	sel.keptSearch(&out, g)
	return out, nil
}
