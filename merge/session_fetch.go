package merge

// This file holds FETCH. Per source, the messages' metadata (FLAGS,
// ENVELOPE, BODYSTRUCTURE, INTERNALDATE, RFC822.SIZE) comes from one
// FETCH by sequence number (looked up with SEARCH UID, so that no reply
// can be misrouted by imapclient) and is written in the client's order;
// body sections are fetched per message, again by sequence number with
// the UID checked, and streamed from the upstream's literal reader into
// the client's literal.

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"

	"imapproxy/upstream"
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
	for _, v := range vuids {
		seq, ok := sel.snap.Seq(v)
		m, known := sel.msg(v)
		if !ok || !known {
			continue
		}
		fm := meta[v]
		if fm == nil || fm.gone {
			// Expunged upstream: what the session knows, no more.
			rw := w.CreateMessage(seq)
			rw.WriteUID(imap.UID(v))
			if options.Flags {
				rw.WriteFlags(sel.flagsOf(v))
			}
			if err := rw.Close(); err != nil {
				return err
			}
			continue
		}
		if err := s.writeMessage(w, cs, seq, v, m, fm, options, bodies, markSeen); err != nil {
			return err
		}
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

// writeMessage writes one message's FETCH response.
func (s *Session) writeMessage(w *imapserver.FetchWriter, cs *conns, seq uint32, v VUID, m ViewMessage, fm *fetchedMeta, options *imap.FetchOptions, bodies, markSeen bool) error {
	b := fm.buf
	rw := w.CreateMessage(seq)
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
	if bodies {
		c, _, err := cs.get(m.Account, m.Mailbox, !markSeen)
		started := false
		if err == nil {
			started, err = s.streamBodies(c, rw, fm.seq, m.UID, options)
		}
		if err != nil {
			s.log.Error("fetch: body failed", "mailbox", s.sel.name, "account", m.Account, "err", err)
			if started && s.broken != nil {
				// A literal is half written: end the connection rather
				// than leave the client waiting for the rest of it.
				s.broken()
			}
			rw.Close()
			return s.clientErr("fetch", s.sel.name, err)
		}
	}
	return rw.Close()
}

// streamBodies fetches the body sections of the message at upstream
// sequence number seq (which must be uid) and streams them into rw.
func (s *Session) streamBodies(c *upstream.Client, rw *imapserver.FetchResponseWriter, seq uint32, uid imap.UID, options *imap.FetchOptions) (started bool, err error) {
	opts := &imap.FetchOptions{UID: true}
	for _, bs := range options.BodySection {
		peek := *bs
		peek.Peek = true
		opts.BodySection = append(opts.BodySection, &peek)
	}
	for _, bs := range options.BinarySection {
		peek := *bs
		peek.Peek = true
		opts.BinarySection = append(opts.BinarySection, &peek)
	}
	opts.BinarySectionSize = options.BinarySectionSize
	bodyUsed := make([]bool, len(options.BodySection))
	binUsed := make([]bool, len(options.BinarySection))
	err = c.Do(s.ctx, func(ic *imapclient.Client) error {
		cmd := ic.Fetch(imap.SeqSetNum(seq), opts)
		var gotUID imap.UID
		var ferr error
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			if msg.SeqNum != seq {
				continue
			}
			for item := msg.Next(); item != nil; item = msg.Next() {
				if ferr != nil {
					continue
				}
				switch item := item.(type) {
				case imapclient.FetchItemDataUID:
					gotUID = item.UID
				case imapclient.FetchItemDataBodySection:
					if gotUID != 0 && gotUID != uid {
						ferr = fmt.Errorf("upstream message %d moved to UID %d", uid, gotUID)
						continue
					}
					i := matchBodySection(options.BodySection, bodyUsed, item.Section)
					if i < 0 || item.Literal == nil {
						continue
					}
					bodyUsed[i] = true
					started = true
					wc := rw.WriteBodySection(options.BodySection[i], item.Literal.Size())
					ferr = copyLiteral(wc, item.Literal)
				case imapclient.FetchItemDataBinarySection:
					i := matchBinarySection(options.BinarySection, binUsed, item.Section)
					if i < 0 || item.Literal == nil {
						continue
					}
					binUsed[i] = true
					started = true
					wc := rw.WriteBinarySection(options.BinarySection[i], item.Literal.Size())
					ferr = copyLiteral(wc, item.Literal)
				case imapclient.FetchItemDataBinarySectionSize:
					for _, bss := range options.BinarySectionSize {
						if slices.Equal(bss.Part, item.Part) {
							rw.WriteBinarySectionSize(bss, item.Size)
							break
						}
					}
				}
			}
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		if ferr == nil && gotUID != uid {
			ferr = fmt.Errorf("upstream FETCH %d returned UID %d, not %d", seq, gotUID, uid)
		}
		return ferr
	})
	return started, err
}

// copyLiteral copies a literal into the client's literal writer, which
// must get exactly the announced size.
func copyLiteral(wc io.WriteCloser, r imap.LiteralReader) error {
	n, err := io.Copy(wc, r)
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
