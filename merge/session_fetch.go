package merge

// This file holds FETCH. Per source, the messages' metadata (FLAGS,
// ENVELOPE, BODYSTRUCTURE, INTERNALDATE, RFC822.SIZE) comes from one
// FETCH by sequence number (looked up with SEARCH UID, so that no reply
// can be misrouted by imapclient) and is written in the client's order;
// body sections are streamed per run of messages (session_fetch_body.go).

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
)

// fetchedMeta is one message's metadata from its upstream.
type fetchedMeta struct {
	seq  uint32 // upstream sequence number
	buf  *imapclient.FetchMessageBuffer
	gone bool
}

// Fetch writes the items of the messages numSet names.
func (s *Session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	sel, err := s.selected()
	if err != nil {
		return err
	}
	vuids, err := sel.resolve(numSet)
	if err != nil {
		return err
	}
	markSeen := false
	if !sel.readOnly {
		for _, bs := range options.BodySection {
			if !bs.Peek {
				markSeen = true
			}
		}
		markSeen = markSeen || len(options.BinarySection) > 0 && !options.BinarySection[0].Peek
	}
	if !markSeen && localOnly(options) {
		return s.fetchLocal(w, sel, vuids, options)
	}
	cs := s.conns()
	defer cs.release()

	meta := make(map[VUID]*fetchedMeta, len(vuids))
	for _, g := range sel.groupBySource(vuids) {
		if err := s.fetchMeta(cs, sel, g, options, markSeen, meta); err != nil {
			return s.clientErr("fetch", sel.name, err)
		}
	}
	bodies := len(options.BodySection)+len(options.BinarySection)+len(options.BinarySectionSize) > 0
	for i := 0; i < len(vuids); {
		v := vuids[i]
		seq, ok := sel.snap.Seq(v)
		m, known := sel.msg(v)
		fm := meta[v]
		switch {
		case !ok || !known:
			i++
			continue
		case fm == nil || fm.gone:
			// Expunged upstream: what the session knows, no more.
			rw := w.CreateMessage(seq)
			rw.WriteUID(imap.UID(v))
			if options.Flags {
				rw.WriteFlags(sel.flagsOf(v))
			}
			if err := rw.Close(); err != nil {
				return err
			}
			i++
			continue
		case !bodies:
			rw := w.CreateMessage(seq)
			s.writeMeta(rw, v, fm, options, markSeen)
			if err := rw.Close(); err != nil {
				return err
			}
			i++
			continue
		}
		run := s.bodyRun(vuids[i:], m, meta)
		if err := s.streamRun(w, cs, run, options, markSeen); err != nil {
			return err
		}
		i += len(run)
	}
	return nil
}

// localOnly reports whether a FETCH asks only for what the session
// knows: UID and FLAGS. Flags are upstream-authoritative, but the hub
// keeps them current (every sync, a watcher per source reporting changes
// within seconds, STORE results), so a client's frequent
// "UID FETCH 1:* (FLAGS)" is answered without going upstream.
func localOnly(o *imap.FetchOptions) bool {
	return !o.Envelope && !o.InternalDate && !o.RFC822Size && o.BodyStructure == nil && !o.ModSeq &&
		len(o.BodySection)+len(o.BinarySection)+len(o.BinarySectionSize) == 0
}

// fetchLocal writes UID and FLAGS from the session's state.
func (s *Session) fetchLocal(w *imapserver.FetchWriter, sel *selection, vuids []VUID, options *imap.FetchOptions) error {
	for _, v := range vuids {
		seq, ok := sel.snap.Seq(v)
		if !ok {
			continue
		}
		rw := w.CreateMessage(seq)
		rw.WriteUID(imap.UID(v))
		if options.Flags {
			rw.WriteFlags(sel.flagsOf(v))
		}
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// fetchMeta fetches the metadata of one source's messages into meta, and
// sets \Seen on them first when the FETCH sets it.
func (s *Session) fetchMeta(cs *conns, sel *selection, g *sourceGroup, options *imap.FetchOptions, markSeen bool, meta map[VUID]*fetchedMeta) error {
	c, _, err := cs.get(g.key.Account, g.key.Mailbox, !markSeen)
	if err != nil {
		return err
	}
	byUID := make(map[imap.UID]VUID, len(g.uids))
	for i, u := range g.uids {
		byUID[u] = g.vuids[i]
		meta[g.vuids[i]] = &fetchedMeta{gone: true}
	}
	return c.Do(s.ctx, func(ic *imapclient.Client) error {
		if markSeen {
			st := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}
			if err := ic.Store(g.uidSet(), st, nil).Close(); err != nil {
				return err
			}
		}
		sd, err := ic.Search(&imap.SearchCriteria{UID: []imap.UIDSet{g.uidSet()}}, nil).Wait()
		if err != nil {
			return err
		}
		seqs := sd.AllSeqNums()
		if len(seqs) == 0 {
			return nil
		}
		opts := &imap.FetchOptions{
			UID:           true,
			Flags:         options.Flags || markSeen,
			Envelope:      options.Envelope,
			InternalDate:  options.InternalDate,
			RFC822Size:    options.RFC822Size,
			BodyStructure: options.BodyStructure,
		}
		bufs, err := ic.Fetch(imap.SeqSetNum(seqs...), opts).Collect()
		if err != nil {
			return err
		}
		for _, b := range bufs {
			v, ok := byUID[b.UID]
			if !ok {
				continue
			}
			meta[v] = &fetchedMeta{seq: b.SeqNum, buf: b}
		}
		return nil
	})
}

// writeMeta writes one message's items other than body sections.
func (s *Session) writeMeta(rw *imapserver.FetchResponseWriter, v VUID, fm *fetchedMeta, options *imap.FetchOptions, markSeen bool) {
	b := fm.buf
	rw.WriteUID(imap.UID(v))
	if options.Flags || markSeen && b.Flags != nil && !sameFlags(b.Flags, s.sel.upstreamFlags(v)) {
		if b.Flags != nil {
			s.sel.setFlags(v, b.Flags)
		}
		rw.WriteFlags(s.sel.flagsOf(v))
	}
	if options.RFC822Size {
		rw.WriteRFC822Size(b.RFC822Size)
	}
	if options.InternalDate {
		rw.WriteInternalDate(b.InternalDate)
	}
	if options.Envelope {
		env := b.Envelope
		if env == nil {
			env = &imap.Envelope{}
		}
		rw.WriteEnvelope(env)
	}
	if options.BodyStructure != nil && b.BodyStructure != nil {
		rw.WriteBodyStructure(normalizeBodyStructure(b.BodyStructure))
	}
}

// copyBufs are copyLiteral's buffers: literals follow one another
// quickly, and a fresh 32 KiB buffer for each would be garbage at once.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyLiteral copies a literal into the client's literal writer, which
// must get exactly the announced size.
func copyLiteral(wc io.WriteCloser, r imap.LiteralReader) error {
	bp := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(wc, r, *bp)
	copyBufs.Put(bp)
	if err == nil && n != r.Size() {
		err = fmt.Errorf("literal of %d bytes ended after %d", r.Size(), n)
	}
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

// matchBodySection finds the requested section an upstream's reply
// answers, among those not answered yet; -1 if none.
func matchBodySection(req []*imap.FetchItemBodySection, used []bool, got *imap.FetchItemBodySection) int {
	if got == nil {
		return -1
	}
	for i, r := range req {
		if used[i] || r.Specifier != got.Specifier || !slices.Equal(r.Part, got.Part) {
			continue
		}
		if (r.Partial == nil) != (got.Partial == nil) || r.Partial != nil && r.Partial.Offset != got.Partial.Offset {
			continue
		}
		if !sameNames(r.HeaderFields, got.HeaderFields) || !sameNames(r.HeaderFieldsNot, got.HeaderFieldsNot) {
			continue
		}
		return i
	}
	return -1
}

// matchBinarySection is matchBodySection for BINARY.
func matchBinarySection(req []*imap.FetchItemBinarySection, used []bool, got *imap.FetchItemBinarySection) int {
	if got == nil {
		return -1
	}
	for i, r := range req {
		if used[i] || !slices.Equal(r.Part, got.Part) {
			continue
		}
		if (r.Partial == nil) != (got.Partial == nil) || r.Partial != nil && r.Partial.Offset != got.Partial.Offset {
			continue
		}
		return i
	}
	return -1
}

// sameNames compares header field name lists without case.
func sameNames(a, b []string) bool {
	return slices.EqualFunc(a, b, strings.EqualFold)
}

// normalizeBodyStructure gives every part extension data (empty where
// the upstream sent none): imapserver panics on a BODYSTRUCTURE part
// without it.
func normalizeBodyStructure(bs imap.BodyStructure) imap.BodyStructure {
	switch bs := bs.(type) {
	case *imap.BodyStructureSinglePart:
		if bs.Extended == nil {
			bs.Extended = &imap.BodyStructureSinglePartExt{}
		}
		if bs.MessageRFC822 != nil && bs.MessageRFC822.BodyStructure != nil {
			bs.MessageRFC822.BodyStructure = normalizeBodyStructure(bs.MessageRFC822.BodyStructure)
		}
	case *imap.BodyStructureMultiPart:
		if bs.Extended == nil {
			bs.Extended = &imap.BodyStructureMultiPartExt{}
		}
		for i, c := range bs.Children {
			bs.Children[i] = normalizeBodyStructure(c)
		}
	}
	return bs
}
