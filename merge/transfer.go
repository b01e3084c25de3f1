package merge

// This file holds the engine of cross-account COPY and MOVE. Each message
// is journaled in the store (store.Transfer) before any upstream work,
// streamed from the source to the target (upstream.Client.AppendFrom:
// FETCH BODY.PEEK[] feeding APPEND, never the whole message in memory),
// and its row advanced once the target is known to have it (APPENDUID,
// else a search by Message-ID and size); a MOVE deletes the source only
// after that (UID STORE \Deleted + UID EXPUNGE of exactly those UIDs,
// which needs UIDPLUS on the source). When anything fails half way, the
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

// deleteBatch is how many moved messages are deleted from the source in
// one UID STORE + UID EXPUNGE.
const deleteBatch = 64

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

// Run copies or moves the messages of req, one at a time, journaled. On
// an error the result has what was done before it (MOVE: those messages
// are gone from the source), and the failed message's row has been
// settled where the upstreams allowed (else the next Recover settles
// it). Messages another engine of this process is transferring are
// waited for.
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
	_, ddata, err := cs.get(ctx, req.DstAccount, req.DstMailbox, false)
	if err != nil {
		return res, err
	}

	settled, err := t.settleEarlier(ctx, cs, req, sdata.UIDValidity)
	if err != nil {
		return res, err
	}
	metas, err := src.FetchMeta(ctx, imap.UIDSetNum(req.UIDs...))
	if err != nil {
		return res, err
	}
	// Messages an earlier transfer already put into the target count as
	// done (a MOVE's settling has deleted them from the source).
	have := make(map[imap.UID]bool, len(metas))
	var todo []upstream.MessageMeta
	for _, m := range metas {
		have[m.UID] = true
		if _, ok := settled[m.UID]; !ok {
			todo = append(todo, m)
		}
	}
	for _, u := range req.UIDs {
		if row, ok := settled[u]; ok {
			var dst imap.UID
			if row.DstUIDValidity == ddata.UIDValidity {
				dst = imap.UID(row.DstUID)
			}
			res.Done = append(res.Done, Transferred{SrcUID: u, DstUID: dst})
		} else if !have[u] {
			res.Missing = append(res.Missing, u)
		}
	}
	run := &transferRun{t: t, cs: cs, req: req, srcValidity: sdata.UIDValidity, res: &res}
	err = run.all(ctx, todo)
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

// all transfers each message of metas, then deletes the moved ones.
func (r *transferRun) all(ctx context.Context, metas []upstream.MessageMeta) error {
	_, data, err := r.cs.get(ctx, r.req.DstAccount, r.req.DstMailbox, false)
	if err != nil {
		return err
	}
	r.dstValidity, r.dstNext, r.perm = data.UIDValidity, data.UIDNext, data.PermanentFlags
	r.res.DstUIDValidity = data.UIDValidity
	for _, m := range metas {
		if err := r.one(ctx, m); err != nil {
			if errors.Is(err, errCrash) {
				return err
			}
			// The moved messages before this one still leave the source.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
			ferr := r.flushDeletes(dctx)
			cancel()
			if ferr != nil {
				r.t.log().Warn("transfer: deleting moved messages failed; recovery finishes it", "account", r.req.SrcAccount, "mailbox", r.req.SrcMailbox, "err", ferr)
			}
			return err
		}
		if len(r.pending) >= deleteBatch {
			if err := r.flushDeletes(ctx); err != nil {
				return err
			}
		}
	}
	return r.flushDeletes(ctx)
}

// errCrash wraps the fault hook's errors: the run stops at once.
var errCrash = errors.New("merge: transfer stopped by a fault")

// one journals and streams one message and records where it went. A
// failure after the journal row was written settles the row.
func (r *transferRun) one(ctx context.Context, m upstream.MessageMeta) error {
	t, req := r.t, r.req
	up, kept := splitFlags(withoutRecent(m.Flags), r.perm)
	row := store.Transfer{
		User: t.User, Kind: req.Kind, State: store.TransferStarted,
		SrcAccount: req.SrcAccount, SrcMailbox: req.SrcMailbox, SrcUIDValidity: r.srcValidity, SrcUID: uint32(m.UID),
		DstAccount: req.DstAccount, DstMailbox: req.DstMailbox, DstUIDValidity: r.dstValidity, DstUIDNext: uint32(r.dstNext),
		Size: m.Size, MessageID: m.MessageID, InternalDate: m.InternalDate,
	}
	if err := t.crashPoint("journal"); err != nil {
		return err
	}
	id, err := t.Store.AddTransfer(ctx, row)
	if err != nil {
		return err
	}
	row.ID = id
	dstUID, err := r.appendOne(ctx, m, up, row)
	if err != nil {
		if errors.Is(err, errCrash) {
			return err
		}
		t.settleAfterFailure(ctx, row, err)
		return err
	}
	r.res.Done = append(r.res.Done, Transferred{SrcUID: m.UID, DstUID: dstUID, Kept: kept})
	return nil
}

// appendOne streams the message and journals the target UID: "done" for
// a COPY, "appended" with the delete queued for a MOVE.
func (r *transferRun) appendOne(ctx context.Context, m upstream.MessageMeta, flags []imap.Flag, row store.Transfer) (imap.UID, error) {
	t, req := r.t, r.req
	src, _, err := r.cs.get(ctx, req.SrcAccount, req.SrcMailbox, req.Kind == store.TransferCopy)
	if err != nil {
		return 0, err
	}
	dst, _, err := r.cs.get(ctx, req.DstAccount, req.DstMailbox, false)
	if err != nil {
		return 0, err
	}
	if err := t.crashPoint("append"); err != nil {
		return 0, err
	}
	var hint uint32
	if m.Seq > uint32(r.deleted) {
		hint = m.Seq - uint32(r.deleted)
	}
	ar, err := dst.AppendFromSeq(ctx, req.DstMailbox, &imap.AppendOptions{Flags: flags, Time: m.InternalDate}, src, m.UID, hint)
	if err != nil {
		return 0, err
	}
	if err := t.crashPoint("appended"); err != nil {
		return 0, err
	}
	dstUID := ar.UID
	if dstUID == 0 || ar.UIDValidity != r.dstValidity {
		uid, ok, err := t.findInTarget(ctx, dst, row, r.dstValidity)
		if err != nil {
			return 0, err
		}
		if !ok {
			return 0, fmt.Errorf("merge: transfer: appended message not found in %s %s", req.DstAccount, req.DstMailbox)
		}
		dstUID = uid
	}
	row.DstUID, row.DstUIDValidity = uint32(dstUID), r.dstValidity
	row.State = store.TransferAppended
	if req.Kind == store.TransferCopy {
		row.State = store.TransferDone
	}
	if err := t.Store.UpdateTransfer(ctx, row); err != nil {
		return 0, err
	}
	r.dstNext = max(r.dstNext, dstUID+1)
	if req.Kind == store.TransferMove {
		r.pending = append(r.pending, pendingDelete{id: row.ID, uid: m.UID})
	}
	return dstUID, nil
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
