package upstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// This file holds the commands merge mode needs, each written once with
// imapclient's pitfalls in mind: every command's responses are drained,
// bodies are fetched by sequence number with the UID checked, and
// everything runs through Do's watchdog.

// ErrNoMessage means the upstream has no message with the UID asked for
// in the selected mailbox (any more), or sent no body for it.
var ErrNoMessage = errors.New("no such message")

// FlagsItem is one message's flags.
type FlagsItem struct {
	UID   imap.UID
	Flags []imap.Flag
}

// List returns every mailbox (LIST "" "*"). Where the upstream offers
// LIST-EXTENDED it asks for the subscriptions with RETURN (SUBSCRIBED)
// (see ListsSubscriptions), and with SPECIAL-USE for special-use
// attributes with RETURN (SPECIAL-USE); servers with SPECIAL-USE but
// without LIST-EXTENDED include those anyway.
func (c *Client) List(ctx context.Context) ([]*imap.ListData, error) {
	var opts *imap.ListOptions
	if c.ListsSubscriptions() {
		opts = &imap.ListOptions{ReturnSubscribed: true, ReturnSpecialUse: c.caps.Has(imap.CapSpecialUse)}
	}
	var l []*imap.ListData
	err := c.do(ctx, "list", true, func(ic *imapclient.Client, _ *watchdog) error {
		var err error
		l, err = ic.List("", "*", opts).Collect()
		return err
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// ListsSubscriptions reports whether List marks subscribed mailboxes
// \Subscribed (the upstream has LIST-EXTENDED), so that a mailbox
// without it is not subscribed.
func (c *Client) ListsSubscriptions() bool { return c.caps.Has(imap.CapListExtended) }

// Select selects the mailbox (EXAMINE with readOnly) and returns its
// data. A NO (no such mailbox) is returned as *imap.Error.
func (c *Client) Select(ctx context.Context, name string, readOnly bool) (*imap.SelectData, error) {
	var data *imap.SelectData
	err := c.do(ctx, "select", true, func(ic *imapclient.Client, _ *watchdog) error {
		var err error
		data, err = ic.Select(name, &imap.SelectOptions{ReadOnly: readOnly}).Wait()
		return err
	})
	if err != nil {
		return nil, err
	}
	return data, nil
}

// Examine selects the mailbox read-only and, where the upstream has
// CONDSTORE, asks for its HIGHESTMODSEQ (EXAMINE name (CONDSTORE)), which
// tells a later sync whether anything changed.
func (c *Client) Examine(ctx context.Context, name string) (*imap.SelectData, error) {
	opts := &imap.SelectOptions{ReadOnly: true, CondStore: c.caps.Has(imap.CapCondStore)}
	var data *imap.SelectData
	err := c.do(ctx, "select", true, func(ic *imapclient.Client, _ *watchdog) error {
		var err error
		data, err = ic.Select(name, opts).Wait()
		return err
	})
	if err != nil {
		return nil, err
	}
	return data, nil
}

// Noop sends NOOP, which also collects pending unilateral data.
func (c *Client) Noop(ctx context.Context) error {
	return c.do(ctx, "noop", true, func(ic *imapclient.Client, _ *watchdog) error {
		return ic.Noop().Wait()
	})
}

// FetchFlags returns the flags of the messages with the given UIDs in the
// selected mailbox (UID FETCH uids (UID FLAGS)), sorted by UID. UIDs
// without a message are missing from the result. FLAGS responses carry
// no literal, so imapclient has the UID before it routes a response;
// every response is drained.
func (c *Client) FetchFlags(ctx context.Context, uids imap.UIDSet) ([]FlagsItem, error) {
	return c.FetchFlagsSince(ctx, uids, 0)
}

// FetchFlagsSince is FetchFlags of the messages whose flags changed after
// mod-sequence since (CHANGEDSINCE, CONDSTORE); 0 means all.
func (c *Client) FetchFlagsSince(ctx context.Context, uids imap.UIDSet, since uint64) ([]FlagsItem, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	var out []FlagsItem
	err := c.do(ctx, "fetch", true, func(ic *imapclient.Client, _ *watchdog) error {
		cmd := ic.Fetch(uids, &imap.FetchOptions{UID: true, Flags: true, ChangedSince: since})
		for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
			var it FlagsItem
			hasFlags := false
			for item := msg.Next(); item != nil; item = msg.Next() {
				switch item := item.(type) {
				case imapclient.FetchItemDataUID:
					it.UID = item.UID
				case imapclient.FetchItemDataFlags:
					it.Flags, hasFlags = item.Flags, true
				}
			}
			if it.UID != 0 && hasFlags && uids.Contains(it.UID) {
				out = append(out, it)
			}
		}
		return cmd.Close()
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b FlagsItem) int { return cmp.Compare(a.UID, b.UID) })
	out = slices.CompactFunc(out, func(a, b FlagsItem) bool { return a.UID == b.UID })
	return out, nil
}

// FetchRaw streams the whole message with the given UID in the selected
// mailbox (BODY.PEEK[], so \Seen is not set) into w and returns the
// number of bytes written. The message is never held in memory.
//
// imapclient routes a UID FETCH response by the UID it has seen when the
// first literal arrives, so an upstream that sends BODY[] before UID
// would have its reply handed to the unilateral handler. FetchRaw
// therefore looks up the message's sequence number (SEARCH UID n),
// fetches (UID BODY.PEEK[]) by sequence number, and checks the UID in the
// response. If the UID comes first and differs (the sequence numbers
// moved in between), or the body went astray (an unsolicited FETCH for
// the same number came first), it tries once more. If the UID comes after
// the body and differs, the data written is another message's: FetchRaw
// returns an error.
//
// On any error, w may have received part of a message and must be
// discarded. A failing w fails FetchRaw, but leaves the Client usable.
// ErrNoMessage means the message is gone.
func (c *Client) FetchRaw(ctx context.Context, uid imap.UID, w io.Writer) (int64, error) {
	var n int64
	err := c.do(ctx, "fetch", true, func(ic *imapclient.Client, _ *watchdog) error {
		for attempt := 0; ; attempt++ {
			retry, err := fetchRawOnce(ic, uid, w, &n, c.raw.Close)
			if !retry || attempt == 1 {
				return err
			}
		}
	})
	return n, err
}

// fetchWhole looks up the sequence number of uid (SEARCH UID) and starts
// a FETCH of its UID and BODY.PEEK[] by that number, so that imapclient
// cannot misroute a reply whose body comes before its UID. The caller
// checks the UID in the reply.
func fetchWhole(ic *imapclient.Client, uid imap.UID) (uint32, *imapclient.FetchCommand, error) {
	crit := &imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(uid)}}
	sd, err := ic.Search(crit, nil).Wait()
	if err != nil {
		return 0, nil, err
	}
	seqs := sd.AllSeqNums()
	if len(seqs) != 1 {
		return 0, nil, fmt.Errorf("UID %d: %w", uid, ErrNoMessage)
	}
	return seqs[0], ic.Fetch(imap.SeqSetNum(seqs[0]), wholeOptions()), nil
}

// wholeOptions fetch UID and BODY.PEEK[].
func wholeOptions() *imap.FetchOptions {
	return &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}
}

// wholeBody reports whether item is the whole message (BODY[]) with a
// literal.
func wholeBody(item imapclient.FetchItemDataBodySection) bool {
	return item.Literal != nil && len(item.Section.Part) == 0 &&
		item.Section.Specifier == imap.PartSpecifierNone && item.Section.Partial == nil
}

// fetchRawOnce is one attempt of FetchRaw. retry says that nothing was
// written and another attempt may succeed.
//
// After a failed read of the literal the connection is closed and the
// command abandoned: draining it would read the literal again while
// imapclient's reader goroutine, released by the failure, reads too.
func fetchRawOnce(ic *imapclient.Client, uid imap.UID, w io.Writer, n *int64, kill func() error) (retry bool, err error) {
	seq, cmd, err := fetchWhole(ic, uid)
	if err != nil {
		return false, err
	}
	var (
		gotUID   imap.UID
		streamed bool
		werr     error
	)
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		if msg.SeqNum != seq {
			continue // Next drains it
		}
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				gotUID = item.UID
			case imapclient.FetchItemDataBodySection:
				if streamed || !wholeBody(item) {
					continue
				}
				if gotUID != 0 && gotUID != uid {
					continue // the wrong message: do not write it
				}
				streamed = true
				// A failing w leaves the rest of the literal to msg.Next,
				// which discards it, so the connection stays in sync.
				ew := &errWriter{w: w}
				wn, err := io.Copy(ew, newLiteralReader(item.Literal))
				*n += wn
				if err != nil && ew.err == nil {
					kill()
					return false, err
				}
				werr = ew.err
			}
		}
	}
	if err := cmd.Close(); err != nil {
		return false, err
	}
	switch {
	case werr != nil:
		return false, werr
	case streamed && gotUID == uid:
		return false, nil
	case streamed && gotUID == 0:
		return false, fmt.Errorf("FETCH %d returned no UID: cannot tell whose body was written", seq)
	case streamed:
		return false, fmt.Errorf("FETCH %d returned UID %d after its body, not %d: the data written is another message's", seq, gotUID, uid)
	case gotUID != 0 && gotUID != uid:
		return true, fmt.Errorf("UID %d: sequence number %d moved to UID %d: %w", uid, seq, gotUID, ErrNoMessage)
	}
	return true, fmt.Errorf("UID %d: no body received: %w", uid, ErrNoMessage)
}

// errWriter remembers w's error, to tell it from a read error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

// UIDExpunge permanently removes the messages with the given UIDs that
// are marked \Deleted (UID EXPUNGE), leaving other \Deleted messages
// alone, and returns the expunged sequence numbers. It requires UIDPLUS
// (or IMAP4rev2); without it, it fails rather than expunge more.
func (c *Client) UIDExpunge(ctx context.Context, uids imap.UIDSet) ([]uint32, error) {
	if !c.caps.Has(imap.CapUIDPlus) {
		return nil, &Error{Upstream: c.opts.Name, Op: "expunge", Err: fmt.Errorf("upstream lacks UIDPLUS")}
	}
	var seqs []uint32
	err := c.do(ctx, "expunge", true, func(ic *imapclient.Client, _ *watchdog) error {
		var err error
		seqs, err = ic.UIDExpunge(uids).Collect()
		return err
	})
	if err != nil {
		return nil, err
	}
	return seqs, nil
}

// Idle runs IDLE on the selected mailbox until ctx ends, max elapses or
// the connection fails, delivering what the upstream reports to the
// unilateral handler; then it ends IDLE (DONE) and waits for the
// upstream's answer. It returns nil after an orderly end, whichever ended
// it. The watchdog covers starting and ending IDLE, not the wait in
// between (TCP keepalive covers that), and ctx ending does not break the
// connection. It fails if the upstream lacks IDLE: poll with Noop then.
func (c *Client) Idle(ctx context.Context, max time.Duration) error {
	if !c.caps.Has(imap.CapIdle) {
		return &Error{Upstream: c.opts.Name, Op: "idle", Err: fmt.Errorf("upstream lacks IDLE")}
	}
	return c.do(ctx, "idle", false, func(ic *imapclient.Client, w *watchdog) error {
		cmd, err := ic.Idle()
		if err != nil {
			return err
		}
		w.pause()
		t := time.NewTimer(max)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-ic.Closed():
		}
		t.Stop()
		w.resume()
		if err := cmd.Close(); err != nil {
			return err
		}
		return cmd.Wait()
	})
}
