package upstream

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// This file holds what moving a message between two upstream accounts
// needs: the source message's metadata, a streaming copy (FETCH
// BODY.PEEK[] on one connection feeding APPEND on another, never holding
// the message), finding an appended message again when the target gives
// no APPENDUID, and deleting exactly the given messages.

// MessageMeta is what a transfer needs to know of a source message before
// its body: what APPEND carries besides the literal, and what identifies
// the message on the target when there is no APPENDUID.
type MessageMeta struct {
	UID imap.UID
	// Seq is the message's sequence number in the FETCH that read the
	// metadata, on its connection (AppendFromSeq's hint).
	Seq          uint32
	Flags        []imap.Flag
	InternalDate time.Time // zero when the upstream sent none
	Size         int64     // RFC822.SIZE
	// MessageID is the Message-ID from the ENVELOPE, without angle
	// brackets; "" when the message has none (or a malformed one).
	MessageID string
}

// AppendResult is where an APPEND put the message: its UID and the
// mailbox's UIDVALIDITY from APPENDUID, both zero when the target has no
// UIDPLUS (then FindMessages finds it).
type AppendResult struct {
	UID         imap.UID
	UIDValidity uint32
}

// ErrBodyBeforeUID means the source upstream sent a message's body before
// its UID, so that a transfer cannot tell whose body it would append; the
// transfer is refused rather than risk appending another message.
var ErrBodyBeforeUID = errors.New("upstream sends BODY[] before UID: cannot tell whose body it is")

// FetchMeta returns the metadata of the messages with the given UIDs in
// the selected mailbox (UID FETCH uids (UID FLAGS INTERNALDATE
// RFC822.SIZE ENVELOPE)), sorted by UID; UIDs without a message are
// missing. ENVELOPE literals are read whole by imapclient before it routes
// the response, so the UID FETCH is safe here (see FetchRaw).
func (c *Client) FetchMeta(ctx context.Context, uids imap.UIDSet) ([]MessageMeta, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	opts := &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true}
	var out []MessageMeta
	err := c.do(ctx, "fetch", true, func(ic *imapclient.Client, _ *watchdog) error {
		var err error
		out, err = fetchMeta(ic, uids, opts)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// fetchMeta runs one metadata FETCH and collects the answers for uids.
func fetchMeta(ic *imapclient.Client, uids imap.UIDSet, opts *imap.FetchOptions) ([]MessageMeta, error) {
	var out []MessageMeta
	cmd := ic.Fetch(uids, opts)
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		m := MessageMeta{Seq: msg.SeqNum}
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				m.UID = item.UID
			case imapclient.FetchItemDataFlags:
				m.Flags = item.Flags
			case imapclient.FetchItemDataInternalDate:
				m.InternalDate = item.Time
			case imapclient.FetchItemDataRFC822Size:
				m.Size = item.Size
			case imapclient.FetchItemDataEnvelope:
				if item.Envelope != nil {
					m.MessageID = item.Envelope.MessageID
				}
			}
		}
		if m.UID != 0 && uids.Contains(m.UID) {
			out = append(out, m)
		}
	}
	if err := cmd.Close(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b MessageMeta) int { return cmp.Compare(a.UID, b.UID) })
	out = slices.CompactFunc(out, func(a, b MessageMeta) bool { return a.UID == b.UID })
	return out, nil
}

// AppendFrom copies the message with the given UID in the mailbox selected
// on src into mailbox on c: it fetches BODY.PEEK[] from src (by sequence
// number, as FetchRaw does, so \Seen is not set) and writes the literal,
// as it arrives, into an APPEND on c with opts (flags, INTERNALDATE). The
// message is never held in memory: the literal's size, which APPEND needs
// first, is known from the FETCH literal, and the bytes pass through a
// small buffer from one connection to the other.
//
// Both commands run under their Client's watchdog and ctx. src and c must
// be different Clients. If the source fails in the middle of the literal,
// c's connection is closed (a short literal cannot be sent; the upstream
// discards the incomplete APPEND) and c is broken. If the target fails,
// src's connection is closed too rather than drained.
//
// The result is the APPENDUID, zero without UIDPLUS. On an error the
// APPEND may or may not have happened (the connection can fail after the
// upstream stored the message and before it answered): the caller finds
// out with FindMessages. ErrNoMessage means the source message is gone;
// ErrBodyBeforeUID that the source cannot be used for transfers.
func (c *Client) AppendFrom(ctx context.Context, mailbox string, opts *imap.AppendOptions, src *Client, uid imap.UID) (AppendResult, error) {
	return c.AppendFromSeq(ctx, mailbox, opts, src, uid, 0)
}

// AppendFromSeq is AppendFrom with the message's sequence number on src
// as the caller believes it to be (0: unknown), which saves the SEARCH
// that looks it up. The UID in the reply is checked before anything is
// appended: a wrong hint costs a FETCH, then the lookup is done.
func (c *Client) AppendFromSeq(ctx context.Context, mailbox string, opts *imap.AppendOptions, src *Client, uid imap.UID, seqHint uint32) (AppendResult, error) {
	if src == c {
		return AppendResult{}, &Error{Upstream: c.opts.Name, Op: "append", Err: errors.New("source and target are one connection")}
	}
	var (
		res       AppendResult
		appendErr error
		appended  bool
	)
	err := src.do(ctx, "fetch", true, func(sic *imapclient.Client, _ *watchdog) error {
		hint, last := seqHint, 1
		if hint != 0 {
			last = 2
		}
		for attempt := 0; ; attempt++ {
			retry, err := transferOnce(sic, uid, hint, src.raw.Close, func(lit imap.LiteralReader) error {
				res, appendErr = c.appendLiteral(ctx, mailbox, opts, lit)
				appended = appendErr == nil
				return appendErr
			})
			if !retry || attempt == last {
				return err
			}
			hint = 0
		}
	})
	switch {
	case appended:
		return res, nil // whatever became of the source afterwards
	case appendErr != nil:
		return res, appendErr // the target's error, not the source's
	}
	return res, err
}

// ErrAppendUnknown marks an APPEND that failed after its whole literal was
// written, without the target's answer (the connection broke or stalled):
// the target may have stored the message, and may still be storing it.
var ErrAppendUnknown = errors.New("APPEND sent whole, its outcome unknown")

// appendBufs are the buffers that gather a streamed literal into large
// writes to the target.
var appendBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

// appendLiteral runs APPEND of lit's bytes into mailbox. A failed read of
// lit (the source) closes c's connection: the literal cannot be finished.
// A failure after the whole literal was written, other than the target's
// NO or BAD, wraps ErrAppendUnknown.
func (c *Client) appendLiteral(ctx context.Context, mailbox string, opts *imap.AppendOptions, lit imap.LiteralReader) (AppendResult, error) {
	var res AppendResult
	sent := false
	err := c.do(ctx, "append", true, func(ic *imapclient.Client, _ *watchdog) error {
		cmd := ic.Append(mailbox, lit.Size(), opts)
		ew := &errWriter{w: cmd}
		// The source's literal comes in small reads; written as they
		// come, each would be a TLS record and a system call of its own.
		bw := appendBufs.Get().(*bufio.Writer)
		bw.Reset(ew)
		n, err := io.Copy(bw, lit)
		if err == nil && n != lit.Size() {
			err = fmt.Errorf("literal of %d bytes ended after %d: %w", lit.Size(), n, io.ErrUnexpectedEOF)
		}
		if err == nil {
			err = bw.Flush()
		}
		bw.Reset(nil)
		appendBufs.Put(bw)
		if err != nil {
			if ew.err == nil {
				// The source failed: the literal cannot be finished, and
				// closing is the only way to abandon it (imapclient would
				// end the command with a CRLF, which the target would
				// take as part of the literal, waiting for the rest).
				c.raw.Close()
			}
			cmd.Close()
			return err
		}
		sent = true
		if err := cmd.Close(); err != nil {
			return err
		}
		data, err := cmd.Wait()
		if err != nil {
			return err
		}
		if data != nil {
			res = AppendResult{UID: data.UID, UIDValidity: data.UIDValidity}
		}
		return nil
	})
	if _, answered := errors.AsType[*imap.Error](err); err != nil && sent && !answered {
		err = fmt.Errorf("%w: %w", ErrAppendUnknown, err)
	}
	return res, err
}

// transferOnce is one attempt of AppendFrom's fetch, calling sink with the
// body literal of message uid. retry says that sink was not called and
// another attempt may succeed. A failure inside sink, of the literal's
// read or of the target, kills the source connection (see fetchRawOnce).
//
// With seqHint, the message is fetched by that sequence number without a
// lookup; a reply for another UID, or a NO or BAD (no such number), is a
// retry.
func transferOnce(ic *imapclient.Client, uid imap.UID, seqHint uint32, kill func() error, sink func(imap.LiteralReader) error) (retry bool, err error) {
	seq, cmd := seqHint, (*imapclient.FetchCommand)(nil)
	if seqHint != 0 {
		cmd = ic.Fetch(imap.SeqSetNum(seqHint), wholeOptions())
	} else if seq, cmd, err = fetchWhole(ic, uid); err != nil {
		return false, err
	}
	var (
		gotUID  imap.UID
		sent    bool
		sinkErr error
		early   bool
	)
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		if msg.SeqNum != seq {
			continue
		}
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				gotUID = item.UID
			case imapclient.FetchItemDataBodySection:
				if sent || !wholeBody(item) {
					continue
				}
				if gotUID == 0 {
					early = true
					continue
				}
				if gotUID != uid {
					continue
				}
				sent = true
				lr := newLiteralReader(item.Literal)
				sinkErr = sink(lr)
				switch {
				case lr.err != nil:
					kill()
					return false, lr.err
				case sinkErr != nil:
					// The target failed part way. Draining the rest of a
					// large literal would keep the source busy for
					// nothing, and race imapclient's reader should the
					// source fail too meanwhile: the source connection is
					// closed, and the literal read until that fails, which
					// releases imapclient's reader (it waits for the
					// literal's end or error).
					kill()
					io.Copy(io.Discard, item.Literal)
					return false, sinkErr
				}
			}
		}
	}
	if err := cmd.Close(); err != nil && sinkErr == nil {
		if _, refused := errors.AsType[*imap.Error](err); refused && seqHint != 0 && !sent {
			return true, err
		}
		return false, err
	}
	switch {
	case sinkErr != nil:
		return false, sinkErr
	case sent:
		return false, nil
	case early:
		return false, fmt.Errorf("UID %d: %w", uid, ErrBodyBeforeUID)
	case gotUID != 0 && gotUID != uid:
		return true, fmt.Errorf("UID %d: sequence number %d moved to UID %d: %w", uid, seq, gotUID, ErrNoMessage)
	}
	return true, fmt.Errorf("UID %d: no body received: %w", uid, ErrNoMessage)
}

// literalReader is a FETCH literal that remembers its read error, to tell
// the source's failures from the target's. A literal that ends before its
// size is such a failure (io.ErrUnexpectedEOF): imapclient reports the
// source closing its connection in the middle of a literal as the
// literal's end, and a copy that trusted it would append a truncated
// message.
type literalReader struct {
	r    io.Reader
	size int64
	n    int64
	err  error
}

// newLiteralReader wraps a FETCH literal.
func newLiteralReader(lit imap.LiteralReader) *literalReader {
	return &literalReader{r: lit, size: lit.Size()}
}

func (l *literalReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.n += int64(n)
	if err == io.EOF && l.n < l.size {
		err = fmt.Errorf("literal of %d bytes ended after %d: %w", l.size, l.n, io.ErrUnexpectedEOF)
	}
	if err != nil && err != io.EOF && l.err == nil {
		l.err = err
	}
	return n, err
}

// Size is the literal's size.
func (l *literalReader) Size() int64 { return l.size }

// MessageQuery identifies a message appended without APPENDUID.
type MessageQuery struct {
	// MinUID is the lowest UID the message can have: the mailbox's
	// UIDNEXT before the APPEND (0 or 1: any).
	MinUID imap.UID
	// Size is the message's RFC822.SIZE; it must match exactly.
	Size int64
	// MessageID, if not "", must match the ENVELOPE's exactly.
	MessageID string
	// InternalDate, if not zero and MessageID is "", must match to the
	// second.
	InternalDate time.Time
}

// FindMessages returns the UIDs, ascending, of the messages in the
// selected mailbox that match q: UID SEARCH UID MinUID:* LARGER Size-1
// SMALLER Size+1 (and HEADER Message-ID when q has one), then a check of
// each candidate's RFC822.SIZE, ENVELOPE Message-ID and INTERNALDATE.
//
// A message without a Message-ID is matched by size and INTERNALDATE
// alone (to the second, as APPEND carries it), and one without either by
// size alone: then another message of the same size appended since MinUID
// also matches, and the caller must treat more than one match as
// ambiguous. MinUID keeps messages that were there before the APPEND
// out, as long as the mailbox's UIDVALIDITY is the same.
func (c *Client) FindMessages(ctx context.Context, q MessageQuery) ([]imap.UID, error) {
	crit := &imap.SearchCriteria{
		UID:     []imap.UIDSet{{imap.UIDRange{Start: max(q.MinUID, 1), Stop: 0}}},
		Smaller: q.Size + 1,
	}
	if q.Size > 0 {
		crit.Larger = q.Size - 1
	}
	if q.MessageID != "" {
		crit.Header = []imap.SearchCriteriaHeaderField{{Key: "Message-ID", Value: q.MessageID}}
	}
	var out []imap.UID
	err := c.do(ctx, "search", true, func(ic *imapclient.Client, _ *watchdog) error {
		sd, err := ic.UIDSearch(crit, nil).Wait()
		if err != nil {
			return err
		}
		var cands imap.UIDSet
		for _, u := range sd.AllUIDs() {
			if u >= q.MinUID { // "n:*" also matches the last message below n
				cands.AddNum(u)
			}
		}
		if len(cands) == 0 {
			return nil
		}
		metas, err := fetchMeta(ic, cands, &imap.FetchOptions{UID: true, InternalDate: true, RFC822Size: true, Envelope: true})
		if err != nil {
			return err
		}
		for _, m := range metas {
			if q.matches(m) {
				out = append(out, m.UID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// matches reports whether m is the message q describes.
func (q MessageQuery) matches(m MessageMeta) bool {
	switch {
	case m.Size != q.Size:
		return false
	case q.MessageID != "":
		return m.MessageID == q.MessageID
	case !q.InternalDate.IsZero() && !m.InternalDate.IsZero():
		return q.InternalDate.Unix() == m.InternalDate.Unix()
	}
	return true
}

// HasUIDs returns those of uids that the selected mailbox has, ascending.
func (c *Client) HasUIDs(ctx context.Context, uids imap.UIDSet) ([]imap.UID, error) {
	items, err := c.FetchFlags(ctx, uids)
	if err != nil {
		return nil, err
	}
	out := make([]imap.UID, len(items))
	for i, it := range items {
		out[i] = it.UID
	}
	return out, nil
}

// RemoveUIDs deletes exactly the messages with the given UIDs from the
// selected mailbox: UID STORE +FLAGS.SILENT (\Deleted), then UID EXPUNGE
// of the same UIDs, so that other messages marked \Deleted stay. It
// requires UIDPLUS (or IMAP4rev2) and fails without it: a plain EXPUNGE
// would remove every \Deleted message of the mailbox.
func (c *Client) RemoveUIDs(ctx context.Context, uids imap.UIDSet) error {
	if len(uids) == 0 {
		return nil
	}
	if !CanRemoveUIDs(c.caps) {
		return &Error{Upstream: c.opts.Name, Op: "expunge", Err: errors.New("upstream lacks UIDPLUS: cannot expunge single messages")}
	}
	return c.do(ctx, "expunge", true, func(ic *imapclient.Client, _ *watchdog) error {
		st := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}
		if err := ic.Store(uids, st, nil).Close(); err != nil {
			return err
		}
		return ic.UIDExpunge(uids).Close()
	})
}

// CanRemoveUIDs reports whether an upstream with caps can expunge single
// messages (UID EXPUNGE: UIDPLUS or IMAP4rev2).
func CanRemoveUIDs(caps imap.CapSet) bool {
	return caps.Has(imap.CapUIDPlus) || caps.Has(imap.CapIMAP4rev2)
}
