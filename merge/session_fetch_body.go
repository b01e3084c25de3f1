package merge

// This file streams body sections. The messages of a FETCH that follow
// one another in the client's order and live in the same source form a
// run, fetched with one upstream FETCH (by sequence number, with UID,
// BODY.PEEK and BINARY.PEEK items): each upstream message is written to
// the client as it arrives, its literals copied from the upstream's
// reader into the client's, so that neither a whole message nor a round
// trip per message stands between the upstream and the client.

import (
	"fmt"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
)

// runItem is one message of a run.
type runItem struct {
	v   VUID
	seq uint32 // the client's sequence number
	m   ViewMessage
	fm  *fetchedMeta
}

// bodyRun returns the run that starts with vuids[0] (whose message is
// first): the following vuids in the session, of the same source, and not
// gone upstream.
func (s *Session) bodyRun(vuids []VUID, first ViewMessage, meta map[VUID]*fetchedMeta) []runItem {
	sel := s.sel
	var run []runItem
	for _, v := range vuids {
		seq, ok := sel.snap.Seq(v)
		m, known := sel.msg(v)
		fm := meta[v]
		if !ok || !known || fm == nil || fm.gone || m.Account != first.Account || m.Mailbox != first.Mailbox {
			break
		}
		run = append(run, runItem{v: v, seq: seq, m: m, fm: fm})
	}
	return run
}

// streamRun fetches the body sections of a run's messages in one upstream
// FETCH and writes each message's response as it arrives (so in the
// upstream's order, which is the client's unless the upstream reorders).
// A message the upstream sent no answer for fails the FETCH after the
// others were written.
func (s *Session) streamRun(w *imapserver.FetchWriter, cs *conns, run []runItem, options *imap.FetchOptions, markSeen bool) error {
	sel := s.sel
	first := run[0].m
	c, _, err := cs.get(first.Account, first.Mailbox, !markSeen)
	if err != nil {
		return s.clientErr("fetch", sel.name, err)
	}
	bySeq := make(map[uint32]int, len(run))
	seqs := make([]uint32, len(run))
	for i, it := range run {
		bySeq[it.fm.seq] = i
		seqs[i] = it.fm.seq
	}
	opts := bodyOptions(options)
	done := make([]bool, len(run))
	started := false // a client literal was begun
	err = c.Do(s.ctx, func(ic *imapclient.Client) error {
		cmd := ic.Fetch(imap.SeqSetNum(seqs...), opts)
		var ferr error
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			i, ok := bySeq[msg.SeqNum]
			if !ok || done[i] || ferr != nil {
				continue // imapclient drains it
			}
			done[i] = true
			it := run[i]
			rw := w.CreateMessage(it.seq)
			s.writeMeta(rw, it.v, it.fm, options, markSeen)
			var lit bool
			lit, ferr = streamItems(msg, rw, options, it.m.UID)
			started = started || lit
			if cerr := rw.Close(); ferr == nil {
				ferr = cerr
			}
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		if ferr != nil {
			return ferr
		}
		for i, ok := range done {
			if !ok {
				return fmt.Errorf("upstream sent no body for UID %d", run[i].m.UID)
			}
		}
		return nil
	})
	if err != nil {
		s.log.Error("fetch: body failed", "mailbox", sel.name, "account", first.Account, "err", err)
		if started && s.broken != nil {
			// A literal may be half written: end the connection rather
			// than leave the client waiting for the rest of it.
			s.broken()
		}
		return s.clientErr("fetch", sel.name, err)
	}
	return nil
}

// bodyOptions are the upstream FETCH items for options' body sections:
// UID, and every section with PEEK (\Seen is set apart, before).
func bodyOptions(options *imap.FetchOptions) *imap.FetchOptions {
	opts := &imap.FetchOptions{UID: true, BinarySectionSize: options.BinarySectionSize}
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
	return opts
}

// streamItems copies one upstream message's body items into rw, checking
// that it is uid. lit reports that a client literal was begun.
func streamItems(msg *imapclient.FetchMessageData, rw *imapserver.FetchResponseWriter, options *imap.FetchOptions, uid imap.UID) (lit bool, err error) {
	bodyUsed := make([]bool, len(options.BodySection))
	binUsed := make([]bool, len(options.BinarySection))
	var gotUID imap.UID
	for item := msg.Next(); item != nil; item = msg.Next() {
		if err != nil {
			continue
		}
		switch item := item.(type) {
		case imapclient.FetchItemDataUID:
			gotUID = item.UID
			if gotUID != uid {
				err = fmt.Errorf("upstream message %d moved to UID %d", uid, gotUID)
			}
		case imapclient.FetchItemDataBodySection:
			i := matchBodySection(options.BodySection, bodyUsed, item.Section)
			if i < 0 || item.Literal == nil {
				continue
			}
			bodyUsed[i], lit = true, true
			err = copyLiteral(rw.WriteBodySection(options.BodySection[i], item.Literal.Size()), item.Literal)
		case imapclient.FetchItemDataBinarySection:
			i := matchBinarySection(options.BinarySection, binUsed, item.Section)
			if i < 0 || item.Literal == nil {
				continue
			}
			binUsed[i], lit = true, true
			err = copyLiteral(rw.WriteBinarySection(options.BinarySection[i], item.Literal.Size()), item.Literal)
		case imapclient.FetchItemDataBinarySectionSize:
			for _, bss := range options.BinarySectionSize {
				if slices.Equal(bss.Part, item.Part) {
					rw.WriteBinarySectionSize(bss, item.Size)
					break
				}
			}
		}
	}
	if err == nil && gotUID != uid {
		err = fmt.Errorf("upstream FETCH returned UID %d, not %d", gotUID, uid)
	}
	return lit, err
}
