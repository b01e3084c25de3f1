package merge

// This file holds the engine of cross-account COPY and MOVE. Each message
// is journaled in the store (store.Transfer) before its APPEND, streamed
// from the source to the target (upstream.Client.AppendRunFrom: one FETCH
// BODY.PEEK[] of up to deleteBatch messages, each body feeding an APPEND
// as it comes, never a whole message in memory), and its row advanced
// once the target is known to have it (APPENDUID, else a search by
// Message-ID and size); a MOVE deletes the source only after that (UID
// STORE \Deleted + UID EXPUNGE of exactly those UIDs, which needs UIDPLUS
// on the source). When anything fails half way, the
// rows left unfinished are settled from the upstreams' truth
// (transfer_recover.go), then or at the next hub start: a moved message
// ends in exactly one place, a copied one in both; never none, never two.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/emersion/go-imap/v2"

	"imapproxy/store"
	"imapproxy/upstream"
)

// deleteBatch is how many messages one upstream run streams (one source
// FETCH), and how many moved ones are then deleted from the source in one
// UID STORE + UID EXPUNGE.
const deleteBatch = 64

// metaBatch is how many messages' metadata one source FETCH reads before
// they are transferred: a transfer's memory does not grow with its size
// beyond the result (about 24 bytes a message).
const metaBatch = 1024

// Transfers copies and moves messages between the accounts of one merged
// user, and recovers the transfers a crash or failure left unfinished.
// It is cheap to make; Hub.transfers makes one over the hub's pools.
type Transfers struct {
	// Store keeps the journal.
	Store store.Store
	// User is the merged user (the journal's key).
	User string
	// Pools are the user's account pools, by account name.
	Pools map[string]*upstream.AccountPool
	// Log gets the transfers' log; nil discards it.
	Log *slog.Logger

	// fault, in tests, is called before each step with its name; an
	// error stops the transfer there as a crash would: nothing more is
	// written, deleted or settled.
	fault func(step string) error
	// metaBatch, in tests, replaces metaBatch when not 0.
	metaBatch int
}

// TransferRequest is a COPY or MOVE of messages of one source mailbox
// into a mailbox of another account.
type TransferRequest struct {
	Kind       store.TransferKind
	SrcAccount string
	SrcMailbox string
	// SrcUIDValidity, if not 0, is the UIDVALIDITY the UIDs belong to; a
	// source with another one was recreated and the request fails with
	// errSourceChanged.
	SrcUIDValidity uint32
	UIDs           []imap.UID
	DstAccount     string
	DstMailbox     string
}

// Transferred is one message that reached the target.
type Transferred struct {
	SrcUID imap.UID
	DstUID imap.UID
	// Kept are keywords of the message that the target cannot store (its
	// PERMANENTFLAGS lacks \* and them): the proxy keeps them instead.
	Kept []imap.Flag
}

// TransferResult is what a transfer did.
type TransferResult struct {
	// DstUIDValidity is the target mailbox's UIDVALIDITY of the DstUIDs.
	DstUIDValidity uint32
	// Done are the messages now in the target (and, for MOVE, gone from
	// the source), in order of source UID.
	Done []Transferred
	// Missing are requested UIDs the source did not have.
	Missing []imap.UID
}

// errCannotMove answers a MOVE from an account whose upstream cannot
// expunge single messages.
var errCannotMove = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
	Text: "Moving messages out of this account is not possible: its server lacks UIDPLUS (copy them, then delete them)"}

// transfers returns the engine over the hub's pools.
func (h *Hub) transfers() *Transfers {
	return &Transfers{Store: h.st, User: h.spec.User, Pools: h.pools, Log: h.log}
}

func (t *Transfers) log() *slog.Logger {
	if t.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return t.Log
}

// step calls the test fault hook.
func (t *Transfers) step(name string) error {
	if t.fault == nil {
		return nil
	}
	return t.fault(name)
}

// Run copies or moves the messages of req, one APPEND at a time,
// journaled. On an error the result has what was done before it (MOVE:
// those messages are gone from the source), and the failed message's row
// has been settled where the upstreams allowed (else the next Recover
// settles it). Messages another engine of this process is transferring
// are waited for.
func (t *Transfers) Run(ctx context.Context, req TransferRequest) (TransferResult, error) {
	var res TransferResult
	switch {
	case req.Kind != store.TransferCopy && req.Kind != store.TransferMove:
		return res, fmt.Errorf("merge: transfer: unknown kind %q", req.Kind)
	case req.SrcAccount == req.DstAccount:
		return res, errors.New("merge: transfer: source and target are one account")
	case t.Pools[req.SrcAccount] == nil || t.Pools[req.DstAccount] == nil:
		return res, fmt.Errorf("merge: transfer: unknown account %q or %q", req.SrcAccount, req.DstAccount)
	case len(req.UIDs) == 0:
		return res, nil
	}
	keys := make([]string, len(req.UIDs))
	for i, u := range req.UIDs {
		keys[i] = transferKey(t.User, req.SrcAccount, req.SrcMailbox, u)
	}
	unlock, err := liveTransfers.lock(ctx, keys)
	if err != nil {
		return res, err
	}
	defer unlock()

	cs := t.conns()
	defer cs.release()
	// Both clients first, in account order, so that two transfers in
	// opposite directions take them in the same order.
	first, second := req.SrcAccount, req.DstAccount
	if second < first {
		first, second = second, first
	}
	for _, a := range []string{first, second} {
		if _, err := cs.client(ctx, a); err != nil {
			return res, err
		}
	}
	move := req.Kind == store.TransferMove
	src, sdata, err := cs.get(ctx, req.SrcAccount, req.SrcMailbox, !move)
	if err != nil {
		return res, err
	}
	if req.SrcUIDValidity != 0 && sdata.UIDValidity != req.SrcUIDValidity {
		return res, errSourceChanged
	}
	if move && !upstream.CanRemoveUIDs(src.Caps()) {
		return res, errCannotMove
	}
	settled, err := t.settleEarlier(ctx, cs, req, sdata.UIDValidity)
	if err != nil {
		return res, err
	}
	run := &transferRun{t: t, cs: cs, req: req, srcValidity: sdata.UIDValidity, res: &res}
	if err := run.start(ctx); err != nil {
		return res, err
	}
	uids := slices.Compact(slices.Sorted(slices.Values(req.UIDs)))
	for chunk := range slices.Chunk(uids, cmp.Or(t.metaBatch, metaBatch)) {
		if err = run.batch(ctx, chunk, settled); err != nil {
			break
		}
	}
	slices.SortFunc(res.Done, func(a, b Transferred) int { return cmp.Compare(a.SrcUID, b.SrcUID) })
	return res, err
}

// transferRun is one Run in progress.
type transferRun struct {
	t           *Transfers
	cs          *transferConns
	req         TransferRequest
	srcValidity uint32
	res         *TransferResult

	dstValidity uint32
	dstNext     imap.UID    // the target's UIDNEXT as far as known
	perm        []imap.Flag // the target's PERMANENTFLAGS
	pending     []pendingDelete
	// deleted counts the source messages this run deleted (on the
	// connection that read the metadata, all below the messages still to
	// go): a message's sequence number is its metadata's less that.
	deleted int
}

// pendingDelete is a moved message whose source copy is still to go.
type pendingDelete struct {
	id  int64
	uid imap.UID
}

// start reads what the run needs of the target.
func (r *transferRun) start(ctx context.Context) error {
	_, data, err := r.cs.get(ctx, r.req.DstAccount, r.req.DstMailbox, false)
	if err != nil {
		return err
	}
	r.dstValidity, r.dstNext, r.perm = data.UIDValidity, data.UIDNext, data.PermanentFlags
	r.res.DstUIDValidity = data.UIDValidity
	return nil
}

// batch transfers the messages with uids (ascending), reading their
// metadata first. Those an earlier transfer settled count as done (a
// MOVE's settling has deleted them from the source); those the source
// lacks are missing.
func (r *transferRun) batch(ctx context.Context, uids []imap.UID, settled map[imap.UID]store.Transfer) error {
	src, _, err := r.cs.get(ctx, r.req.SrcAccount, r.req.SrcMailbox, r.req.Kind == store.TransferCopy)
	if err != nil {
		return err
	}
	metas, err := src.FetchMeta(ctx, imap.UIDSetNum(uids...))
	if err != nil {
		return err
	}
	r.deleted = 0 // the sequence numbers are as of this FETCH
	have := make(map[imap.UID]bool, len(metas))
	var todo []upstream.MessageMeta
	for _, m := range metas {
		have[m.UID] = true
		if _, ok := settled[m.UID]; !ok {
			todo = append(todo, m)
		}
	}
	for _, u := range uids {
		if row, ok := settled[u]; ok {
			var dst imap.UID
			if row.DstUIDValidity == r.dstValidity {
				dst = imap.UID(row.DstUID)
			}
			r.res.Done = append(r.res.Done, Transferred{SrcUID: u, DstUID: dst})
		} else if !have[u] {
			r.res.Missing = append(r.res.Missing, u)
		}
	}
	return r.all(ctx, todo)
}

// all transfers the messages of metas in runs of deleteBatch, deleting
// the moved ones after each run.
func (r *transferRun) all(ctx context.Context, metas []upstream.MessageMeta) error {
	for len(metas) > 0 {
		n := min(deleteBatch, len(metas))
		if err := r.run(ctx, metas[:n]); err != nil {
			if errors.Is(err, errCrash) {
				return err
			}
			// The moved messages before the failure still leave the
			// source.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
			ferr := r.flushDeletes(dctx)
			cancel()
			if ferr != nil {
				r.t.log().Warn("transfer: deleting moved messages failed; recovery finishes it", "account", r.req.SrcAccount, "mailbox", r.req.SrcMailbox, "err", ferr)
			}
			return err
		}
		if err := r.flushDeletes(ctx); err != nil {
			return err
		}
		metas = metas[n:]
	}
	return nil
}

// errCrash wraps the fault hook's errors: the run stops at once.
var errCrash = errors.New("merge: transfer stopped by a fault")

// run streams metas with one upstream run (upstream.AppendRunFrom: one
// FETCH of their bodies, each fed to an APPEND as it comes), journaling
// each message before its APPEND and recording it after. Messages the run
// skipped (the source's sequence numbers moved under it) go one at a
// time. A failure settles the row of the message it hit.
func (r *transferRun) run(ctx context.Context, metas []upstream.MessageMeta) error {
	req := r.req
	src, _, err := r.cs.get(ctx, req.SrcAccount, req.SrcMailbox, req.Kind == store.TransferCopy)
	if err != nil {
		return err
	}
	dst, _, err := r.cs.get(ctx, req.DstAccount, req.DstMailbox, false)
	if err != nil {
		return err
	}
	items := make([]upstream.RunItem, len(metas))
	for i, m := range metas {
		items[i] = upstream.RunItem{UID: m.UID, Seq: r.seqHint(m)}
	}
	begun := make([]bool, len(metas))
	var (
		cur  store.Transfer // the row of the message in flight
		kept []imap.Flag
		open bool
	)
	err = dst.AppendRunFrom(ctx, req.DstMailbox, src, items, upstream.RunHooks{
		Begin: func(i int) (*imap.AppendOptions, error) {
			begun[i] = true
			row, opts, k, err := r.begin(ctx, metas[i])
			if err != nil {
				return nil, err
			}
			cur, kept, open = row, k, true
			return opts, nil
		},
		Done: func(i int, ar upstream.AppendResult) error {
			if err := r.finish(ctx, metas[i], cur, kept, ar); err != nil {
				return err
			}
			open = false
			return nil
		},
	})
	if err != nil {
		if open && !errors.Is(err, errCrash) {
			r.t.settleAfterFailure(ctx, cur, err)
		}
		return err
	}
	for i, m := range metas {
		if begun[i] {
			continue
		}
		if err := r.one(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// seqHint is m's sequence number on the connection that read the
// metadata, less the messages this run deleted there (0: unknown).
func (r *transferRun) seqHint(m upstream.MessageMeta) uint32 {
	if m.Seq > uint32(r.deleted) {
		return m.Seq - uint32(r.deleted)
	}
	return 0
}

// begin journals m's transfer before its APPEND; it returns the row, the
// APPEND's options, and the keywords the target cannot keep. An error
// after the row was written is the fault hook's.
func (r *transferRun) begin(ctx context.Context, m upstream.MessageMeta) (store.Transfer, *imap.AppendOptions, []imap.Flag, error) {
	t, req := r.t, r.req
	up, kept := splitFlags(withoutRecent(m.Flags), r.perm)
	row := store.Transfer{
		User: t.User, Kind: req.Kind, State: store.TransferStarted,
		SrcAccount: req.SrcAccount, SrcMailbox: req.SrcMailbox, SrcUIDValidity: r.srcValidity, SrcUID: uint32(m.UID),
		DstAccount: req.DstAccount, DstMailbox: req.DstMailbox, DstUIDValidity: r.dstValidity, DstUIDNext: uint32(r.dstNext),
		Size: m.Size, MessageID: m.MessageID, InternalDate: m.InternalDate,
	}
	if err := t.crashPoint("journal"); err != nil {
		return row, nil, nil, err
	}
	id, err := t.Store.AddTransfer(ctx, row)
	if err != nil {
		return row, nil, nil, err
	}
	row.ID = id
	if err := t.crashPoint("append"); err != nil {
		return row, nil, nil, err
	}
	return row, &imap.AppendOptions{Flags: up, Time: m.InternalDate}, kept, nil
}

// one journals and streams one message by itself and records where it
// went. A failure after the journal row was written settles the row.
func (r *transferRun) one(ctx context.Context, m upstream.MessageMeta) error {
	req := r.req
	src, _, err := r.cs.get(ctx, req.SrcAccount, req.SrcMailbox, req.Kind == store.TransferCopy)
	if err != nil {
		return err
	}
	dst, _, err := r.cs.get(ctx, req.DstAccount, req.DstMailbox, false)
	if err != nil {
		return err
	}
	row, opts, kept, err := r.begin(ctx, m)
	if err != nil {
		return err
	}
	ar, err := dst.AppendFromSeq(ctx, req.DstMailbox, opts, src, m.UID, r.seqHint(m))
	if err == nil {
		err = r.finish(ctx, m, row, kept, ar)
	}
	if err != nil && !errors.Is(err, errCrash) {
		r.t.settleAfterFailure(ctx, row, err)
	}
	if errors.Is(err, upstream.ErrNoMessage) {
		// Expunged by another client since the metadata was read: missing,
		// like a UID that was never there, and the others go on.
		r.res.Missing = append(r.res.Missing, m.UID)
		return nil
	}
	return err
}

// finish records where an appended message went: the target UID in its
// row, "done" for a COPY, "appended" with the delete queued for a MOVE.
func (r *transferRun) finish(ctx context.Context, m upstream.MessageMeta, row store.Transfer, kept []imap.Flag, ar upstream.AppendResult) error {
	t, req := r.t, r.req
	if err := t.crashPoint("appended"); err != nil {
		return err
	}
	dstUID := ar.UID
	if dstUID == 0 || ar.UIDValidity != r.dstValidity {
		dst, _, err := r.cs.get(ctx, req.DstAccount, req.DstMailbox, false)
		if err != nil {
			return err
		}
		uid, ok, err := t.findInTarget(ctx, dst, row, r.dstValidity)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("merge: transfer: appended message not found in %s %s", req.DstAccount, req.DstMailbox)
		}
		dstUID = uid
	}
	row.DstUID, row.DstUIDValidity = uint32(dstUID), r.dstValidity
	row.State = store.TransferAppended
	if req.Kind == store.TransferCopy {
		row.State = store.TransferDone
	}
	if err := t.Store.UpdateTransfer(ctx, row); err != nil {
		return err
	}
	r.dstNext = max(r.dstNext, dstUID+1)
	if req.Kind == store.TransferMove {
		r.pending = append(r.pending, pendingDelete{id: row.ID, uid: m.UID})
	}
	r.res.Done = append(r.res.Done, Transferred{SrcUID: m.UID, DstUID: dstUID, Kept: kept})
	return nil
}

// flushDeletes removes the pending moved messages from the source and
// marks their rows done.
func (r *transferRun) flushDeletes(ctx context.Context) error {
	if len(r.pending) == 0 {
		return nil
	}
	t := r.t
	if err := t.crashPoint("delete"); err != nil {
		return err
	}
	src, _, err := r.cs.get(ctx, r.req.SrcAccount, r.req.SrcMailbox, false)
	if err != nil {
		return err
	}
	var uids imap.UIDSet
	ids := make([]int64, len(r.pending))
	for i, p := range r.pending {
		uids.AddNum(p.uid)
		ids[i] = p.id
	}
	if err := src.RemoveUIDs(ctx, uids); err != nil {
		return err
	}
	r.deleted += len(r.pending)
	if err := t.crashPoint("deleted"); err != nil {
		return err
	}
	if err := t.Store.SetTransferStates(ctx, ids, store.TransferDone); err != nil {
		return err
	}
	r.pending = r.pending[:0]
	return nil
}

// crashPoint runs the fault hook at a step, wrapping its error in
// errCrash.
func (t *Transfers) crashPoint(step string) error {
	if err := t.step(step); err != nil {
		return fmt.Errorf("%w at %s: %w", errCrash, step, err)
	}
	return nil
}
