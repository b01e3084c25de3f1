package merge

// This file holds the keywords the proxy keeps for upstreams that cannot:
// a source whose PERMANENTFLAGS lacks \* cannot store a new keyword, so
// STORE of such a keyword goes to the store (store.SetKeywords, keyed by
// the virtual mailbox and vuid) instead of upstream. FETCH FLAGS and
// flag updates show the upstream's flags with the kept keywords added,
// SEARCH KEYWORD and UNKEYWORD find them, and the mailbox's
// PERMANENTFLAGS has \* since the proxy can keep any keyword. System
// flags always go upstream.

import (
	"context"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// loadKept reads the kept keywords of the selection's messages.
func (sel *selection) loadKept(ctx context.Context, s *Session) error {
	kws, err := s.hub.st.MailboxKeywords(ctx, sel.vmID)
	if err != nil {
		return err
	}
	sel.kept = make(map[VUID][]imap.Flag, len(kws))
	for v, ks := range kws {
		if _, ok := sel.snap.Seq(VUID(v)); !ok {
			continue
		}
		for _, k := range ks {
			sel.kept[VUID(v)] = append(sel.kept[VUID(v)], imap.Flag(k))
		}
	}
	return nil
}

// flagsOf returns the flags a client sees for v: the upstream's and the
// kept keywords.
func (sel *selection) flagsOf(v VUID) []imap.Flag {
	flags := sel.upstreamFlags(v)
	kept := sel.kept[v]
	if len(kept) == 0 {
		return flags
	}
	out := slices.Clone(flags)
	for _, k := range kept {
		if !hasFlag(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// isKeyword reports whether f is a keyword (not a system flag).
func isKeyword(f imap.Flag) bool {
	return f != "" && !strings.HasPrefix(string(f), `\`)
}

// upstreamKeeps reports whether a source whose SELECT reported perm keeps
// f. A missing PERMANENTFLAGS counts as keeping everything (the proxy
// then leaves the flags to the upstream, as before).
func upstreamKeeps(perm []imap.Flag, f imap.Flag) bool {
	if perm == nil || !isKeyword(f) || slices.Contains(perm, imap.FlagWildcard) {
		return true
	}
	return hasFlag(perm, f)
}

// splitFlags splits a STORE's flags into those for the upstream and the
// keywords the proxy keeps, given the source's PERMANENTFLAGS.
func splitFlags(flags []imap.Flag, perm []imap.Flag) (up, kept []imap.Flag) {
	for _, f := range flags {
		if upstreamKeeps(perm, f) {
			up = append(up, f)
		} else {
			kept = append(kept, f)
		}
	}
	return up, kept
}

// storeKept applies a STORE's op to the kept keywords of vuids (kws are
// the keywords the proxy keeps for their source; for Remove every
// keyword of the STORE counts) and saves those that changed.
func (s *Session) storeKept(sel *selection, vuids []VUID, op imap.StoreFlagsOp, kws, all []imap.Flag) (map[VUID]bool, error) {
	changed := make(map[VUID]bool)
	for _, v := range vuids {
		old := sel.kept[v]
		var next []imap.Flag
		switch op {
		case imap.StoreFlagsSet:
			next = slices.Clone(kws)
		case imap.StoreFlagsAdd:
			next = slices.Clone(old)
			for _, k := range kws {
				if !hasFlag(next, k) {
					next = append(next, k)
				}
			}
		case imap.StoreFlagsDel:
			for _, k := range old {
				if !hasFlag(all, k) {
					next = append(next, k)
				}
			}
		}
		next = uniqueFlags(next)
		if sameFlags(old, next) {
			continue
		}
		raw := make([]string, len(next))
		for i, k := range next {
			raw[i] = string(k)
		}
		if err := s.hub.st.SetKeywords(s.ctx, sel.vmID, uint32(v), raw); err != nil {
			return changed, err
		}
		if len(next) == 0 {
			delete(sel.kept, v)
		} else {
			sel.kept[v] = next
		}
		changed[v] = true
	}
	return changed, nil
}

// uniqueFlags drops repeated flags (case-insensitively), keeping the
// first spelling.
func uniqueFlags(fs []imap.Flag) []imap.Flag {
	var out []imap.Flag
	for _, f := range fs {
		if !hasFlag(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// keptSearch rewrites the keyword criteria of c (not of its Not and Or,
// which translate handles) for one source group: KEYWORD k also matches
// the group's messages that have k kept (OR KEYWORD k UID set), UNKEYWORD
// k excludes them (NOT UID set).
func (sel *selection) keptSearch(out *imap.SearchCriteria, g *sourceGroup) {
	keptUIDs := func(k imap.Flag) imap.UIDSet {
		var set imap.UIDSet
		for i, v := range g.vuids {
			if hasFlag(sel.kept[v], k) {
				set.AddNum(g.uids[i])
			}
		}
		return set
	}
	var flags []imap.Flag
	for _, f := range out.Flag {
		set := keptUIDs(f)
		if !isKeyword(f) || len(set) == 0 {
			flags = append(flags, f)
			continue
		}
		out.Or = append(out.Or, [2]imap.SearchCriteria{{Flag: []imap.Flag{f}}, {UID: []imap.UIDSet{set}}})
	}
	out.Flag = flags
	for _, f := range out.NotFlag {
		if set := keptUIDs(f); isKeyword(f) && len(set) > 0 {
			out.Not = append(out.Not, imap.SearchCriteria{UID: []imap.UIDSet{set}})
		}
	}
}

// withKeptFlags returns a mailbox's FLAGS with the kept keywords of the
// selection added, and its PERMANENTFLAGS with \* (the proxy keeps any
// keyword an upstream cannot).
func (sel *selection) withKeptFlags(flags, perm []imap.Flag) ([]imap.Flag, []imap.Flag) {
	flags = slices.Clone(flags)
	for _, ks := range sel.kept {
		for _, k := range ks {
			if !hasFlag(flags, k) {
				flags = append(flags, k)
			}
		}
	}
	if perm != nil && !slices.Contains(perm, imap.FlagWildcard) {
		perm = append(slices.Clone(perm), imap.FlagWildcard)
	}
	return flags, perm
}

// copyKept gives the copies of srcV (dstV, in virtual mailbox vmID) the
// keywords the proxy keeps for their originals. A failure is logged: the
// copy itself has been made.
func (s *Session) copyKept(sel *selection, vmID int64, srcV []VUID, dstV []uint32) {
	for i, v := range srcV {
		kept := sel.kept[v]
		if len(kept) == 0 || i >= len(dstV) {
			continue
		}
		raw := make([]string, len(kept))
		for j, k := range kept {
			raw[j] = string(k)
		}
		if err := s.hub.st.SetKeywords(s.ctx, vmID, dstV[i], raw); err != nil {
			s.log.Warn("copy: kept keywords lost", "mailbox", sel.name, "vuid", dstV[i], "err", err)
		}
		if vmID == sel.vmID {
			sel.kept[VUID(dstV[i])] = slices.Clone(kept)
		}
	}
}
