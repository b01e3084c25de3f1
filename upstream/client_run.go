package upstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// RunItem is one message of an AppendRunFrom run.
type RunItem struct {
	UID imap.UID
	// Seq is the message's sequence number on the source connection as
	// the caller believes it to be; the FETCH reply's UID checks it.
	Seq uint32
}

// RunHooks are AppendRunFrom's callbacks, called on its goroutine, in
// the order of the source's reply.
type RunHooks struct {
	// Begin is called for items[i] once the source's reply showed that
	// the body coming is that message's, before its APPEND starts. It
	// returns the APPEND's options. An error ends the run.
	Begin func(i int) (*imap.AppendOptions, error)
	// Done is called once items[i]'s APPEND has succeeded, before the
	// next APPEND starts. An error ends the run.
	Done func(i int, res AppendResult) error
}

// AppendRunFrom appends messages of src's selected mailbox, in order,
// into mailbox on c: one FETCH (UID BODY.PEEK[]) of all their sequence
// numbers on src, each body literal streamed into an APPEND of its own
// as it comes, never held whole. Each APPEND is answered (and Done
// called) before the next one starts, so that a caller journaling its
// transfers knows every message's fate but the current one's; meanwhile
// the rest of the source's reply streams ahead into the connection's
// buffers. A run thus costs one APPEND round trip per message, where
// AppendFromSeq costs a FETCH round trip too, and the source reads the
// next message while the target stores this one. The APPENDs are not
// pipelined: several unanswered ones would each have to be looked for in
// the target after a failure, among each other's copies.
//
// Items whose sequence number shows another UID, or no message, are
// skipped: Begin is not called for them, and the caller moves them with
// AppendFromSeq. So are those left when the source refuses the FETCH
// (a sequence number beyond the mailbox). A source that sends a body before its UID ends the run
// with ErrBodyBeforeUID.
//
// The error is Begin's or Done's as they returned it, the target's for
// the APPEND of the last begun message (wrapping ErrAppendUnknown as
// AppendFrom's does), or the source's. A run that ends before the
// source's reply did closes the source's connection: the rest of the
// reply, maybe large, is not worth draining.
func (c *Client) AppendRunFrom(ctx context.Context, mailbox string, src *Client, items []RunItem, hooks RunHooks) error {
	if src == c {
		return &Error{Upstream: c.opts.Name, Op: "append", Err: errors.New("source and target are one connection")}
	}
	if len(items) == 0 {
		return nil
	}
	bySeq := make(map[uint32]int, len(items))
	var seqs imap.SeqSet
	for i, it := range items {
		if it.Seq == 0 {
			continue
		}
		bySeq[it.Seq] = i
		seqs.AddNum(it.Seq)
	}
	if len(bySeq) == 0 {
		return nil
	}
	// The source's failures go through src.do, which tells a broken or
	// stalled connection; the others come back as they are.
	var other error
	err := src.do(ctx, "fetch", true, func(sic *imapclient.Client, _ *watchdog) error {
		var srcErr error
		srcErr, other = c.appendRun(ctx, mailbox, sic, seqs, bySeq, items, hooks, src.raw.Close)
		return srcErr
	})
	if other != nil {
		return other
	}
	return err
}

// appendRun is AppendRunFrom's work on the source connection sic. It
// returns the source's failure, or another (Begin's, Done's, the
// target's, ErrBodyBeforeUID), having closed the source (see abandon).
func (c *Client) appendRun(ctx context.Context, mailbox string, sic *imapclient.Client, seqs imap.SeqSet, bySeq map[uint32]int,
	items []RunItem, hooks RunHooks, kill func() error) (srcErr, other error) {
	cmd := sic.Fetch(seqs, wholeOptions())
	abandon := func(err error) (error, error) {
		// The source is closed, and the reply drained until that fails:
		// imapclient's reader waits for each literal to be read, the one
		// in hand and any the reader had buffered, and only then sees
		// the closed connection and ends the command.
		kill()
		cmd.Close()
		return nil, err
	}
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		i, ok := bySeq[msg.SeqNum]
		if !ok {
			continue
		}
		delete(bySeq, msg.SeqNum) // one body per item, whatever the server repeats
		var gotUID imap.UID
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				gotUID = item.UID
			case imapclient.FetchItemDataBodySection:
				if !wholeBody(item) {
					continue
				}
				if gotUID == 0 {
					return abandon(fmt.Errorf("UID %d: %w", items[i].UID, ErrBodyBeforeUID))
				}
				if gotUID != items[i].UID {
					continue // a wrong hint: the caller moves it another way
				}
				opts, err := hooks.Begin(i)
				if err != nil {
					return abandon(err)
				}
				lr := newLiteralReader(item.Literal)
				res, err := c.appendLiteral(ctx, mailbox, opts, lr)
				switch {
				case lr.err != nil:
					// The source failed (and appendLiteral closed the
					// target). A literal whose read failed must not be
					// read again (imapclient's reader, released by the
					// failure, reads on): no drain, and none is needed,
					// as nothing is left buffered behind a failed read.
					kill()
					return lr.err, nil
				case err != nil:
					return abandon(err)
				}
				if err := hooks.Done(i, res); err != nil {
					return abandon(err)
				}
			}
		}
	}
	err := cmd.Close()
	if _, refused := errors.AsType[*imap.Error](err); refused {
		// A NO or BAD: most likely a sequence number beyond the mailbox
		// (another client expunged messages meanwhile). The connection
		// is fine; the items not moved are the caller's to look up.
		return nil, nil
	}
	return err, nil
}
