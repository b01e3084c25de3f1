package merge

// This file settles transfers left unfinished: after a crash (Recover, at
// hub start), after a failure in the middle of a transfer (at once), and
// before a transfer of a message that an earlier, failed one was moving
// (so that a client's retry duplicates nothing).
//
// Each unfinished journal row is judged from the upstreams' truth:
//
//	target has it?  source has it?  COPY               MOVE
//	yes             yes             done               delete source, done
//	yes             no              done               done
//	no              yes             append again, done rolled back (source keeps it)
//	no              no              rolled back (logged: deleted by someone else)
//
// "Target has it" is the row's target UID when the append was confirmed
// (APPENDUID or a search) and the target's UIDVALIDITY is unchanged, else
// a search (upstream.Client.FindMessages) above the target's UIDNEXT as of
// the append: by Message-ID and size, or for messages without Message-ID
// by size and INTERNALDATE. A target that rewrites messages on APPEND
// (adding headers, changing line ends) defeats the size match; such a
// target would get a second copy of a COPY that was interrupted before
// its append was confirmed. A row whose target says the message was
// appended (confirmed) but no longer has it was deleted there by the
// user: it is rolled back, never appended again.
//
// The source is deleted only from a row that says "appended", and only
// with UID EXPUNGE of that UID, so no path deletes a message that the
// target has not got.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/emersion/go-imap/v2"

	"imapproxy/store"
	"imapproxy/upstream"
)

// transferKeep is how long finished journal rows are kept (for the
// record) before Recover prunes them.
const transferKeep = 7 * 24 * time.Hour

// appendGrace is how long settling waits after an APPEND failed with its
// outcome unknown (upstream.ErrAppendUnknown: the connection broke after
// the whole literal was sent), so that a target still storing the message
// has it when the settling looks.
const appendGrace = time.Second

// settleTimeout bounds settling a failed transfer's row when the
// command's own context has ended (the client went away).
const settleTimeout = time.Minute

// Recover settles every unfinished transfer of the user that no engine of
// this process is working on, and prunes old finished rows. It returns
// how many rows it settled; rows it could not settle (an upstream down)
// stay for the next call, and the first such error is returned.
func (t *Transfers) Recover(ctx context.Context) (int, error) {
	rows, err := t.Store.ListTransfers(ctx, t.User, true)
	if err != nil {
		return 0, err
	}
	cs := t.conns()
	defer cs.release()
	n := 0
	var first error
	for _, row := range rows {
		unlock, ok := liveTransfers.tryLock(transferKey(t.User, row.SrcAccount, row.SrcMailbox, imap.UID(row.SrcUID)))
		if !ok {
			continue // a running transfer has it
		}
		err := t.settleLocked(ctx, cs, row)
		unlock()
		if err != nil {
			t.log().Warn("transfer: recovery left a transfer unfinished", "account", row.SrcAccount, "mailbox", row.SrcMailbox,
				"uid", row.SrcUID, "target", row.DstAccount+" "+row.DstMailbox, "err", err)
			if first == nil {
				first = err
			}
			if ctx.Err() != nil {
				return n, first
			}
			continue
		}
		n++
	}
	if _, err := t.Store.PruneTransfers(ctx, time.Now().Add(-transferKeep)); err != nil && first == nil {
		first = err
	}
	return n, first
}

// settleLocked settles one row whose source message's lock the caller
// holds, reading it again first (another engine may have finished it).
func (t *Transfers) settleLocked(ctx context.Context, cs *transferConns, row store.Transfer) error {
	rows, err := t.Store.ListTransfers(ctx, t.User, true)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if r.ID == row.ID {
			_, err := t.settle(ctx, cs, r)
			return err
		}
	}
	return nil // finished meanwhile
}

// settleAfterFailure settles a row whose transfer just failed with cause,
// on fresh connections where the run's broke, and logs the outcome.
func (t *Transfers) settleAfterFailure(ctx context.Context, row store.Transfer, cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if errors.Is(cause, upstream.ErrAppendUnknown) {
		// The target may have the whole literal and still be storing
		// it: judged at once, the message would be missing there, the
		// MOVE rolled back, and then the target would have a second copy.
		timer := time.NewTimer(appendGrace)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
		}
	}
	cs := t.conns()
	defer cs.release()
	log := t.log().With("account", row.SrcAccount, "mailbox", row.SrcMailbox, "uid", row.SrcUID,
		"target", row.DstAccount+" "+row.DstMailbox, "cause", cause)
	if errors.Is(cause, upstream.ErrAppendUnknown) && !t.targetShows(ctx, cs, row) {
		// Still not there: a slow target may yet store it. Rolling the
		// MOVE back now could leave two copies; the hub's recovery
		// (within recoverRetry) judges it when the target has settled.
		log.Warn("transfer failed with its APPEND's outcome unknown; recovery settles it later")
		return
	}
	settled, err := t.settle(ctx, cs, row)
	if err != nil {
		log.Warn("transfer failed and could not be settled yet; recovery does it later", "err", err)
		return
	}
	log.Info("transfer failed and was settled", "state", settled.State)
}

// targetShows reports whether the target is known to have row's message
// (false when it does not, or cannot be asked).
func (t *Transfers) targetShows(ctx context.Context, cs *transferConns, row store.Transfer) bool {
	cs.forget(row.DstAccount)
	dst, ddata, err := cs.get(ctx, row.DstAccount, row.DstMailbox, false)
	if err != nil {
		return false
	}
	_, in, err := t.targetHas(ctx, dst, ddata, row)
	return err == nil && in
}

// settleEarlier settles the unfinished rows of req's source messages
// (a retry after a failure) and returns, by source UID, the settled rows
// of those that an earlier transfer into the same target put there.
func (t *Transfers) settleEarlier(ctx context.Context, cs *transferConns, req TransferRequest, srcValidity uint32) (map[imap.UID]store.Transfer, error) {
	rows, err := t.Store.ListTransfers(ctx, t.User, true)
	if err != nil {
		return nil, err
	}
	want := make(map[imap.UID]bool, len(req.UIDs))
	for _, u := range req.UIDs {
		want[u] = true
	}
	out := make(map[imap.UID]store.Transfer)
	for _, row := range rows {
		if row.SrcAccount != req.SrcAccount || row.SrcMailbox != req.SrcMailbox ||
			row.SrcUIDValidity != srcValidity || !want[imap.UID(row.SrcUID)] {
			continue
		}
		settled, err := t.settle(ctx, cs, row)
		if err != nil {
			return nil, err
		}
		if settled.State == store.TransferDone && row.DstAccount == req.DstAccount && row.DstMailbox == req.DstMailbox {
			out[imap.UID(row.SrcUID)] = settled
		}
	}
	return out, nil
}

// settle decides one unfinished row from the upstreams and finishes or
// rolls it back (see the table at the top of the file), returning the
// row as written (its DstUID set when the target has the message).
func (t *Transfers) settle(ctx context.Context, cs *transferConns, row store.Transfer) (store.Transfer, error) {
	move := row.Kind == store.TransferMove
	cs.forget(row.DstAccount)
	dst, ddata, err := cs.get(ctx, row.DstAccount, row.DstMailbox, false)
	dstGone := err != nil && isNoMailbox(err)
	if err != nil && !dstGone {
		return row, fmt.Errorf("target: %w", err)
	}
	var dstUID imap.UID
	inTarget := false
	if !dstGone {
		if dstUID, inTarget, err = t.targetHas(ctx, dst, ddata, row); err != nil {
			return row, fmt.Errorf("target: %w", err)
		}
	}
	src, sdata, err := cs.get(ctx, row.SrcAccount, row.SrcMailbox, !move)
	if err != nil && !isNoMailbox(err) {
		return row, fmt.Errorf("source: %w", err)
	}
	inSource := false
	if err == nil && sdata.UIDValidity == row.SrcUIDValidity {
		have, err := src.HasUIDs(ctx, imap.UIDSetNum(imap.UID(row.SrcUID)))
		if err != nil {
			return row, fmt.Errorf("source: %w", err)
		}
		inSource = len(have) == 1
	}
	log := t.log().With("account", row.SrcAccount, "mailbox", row.SrcMailbox, "uid", row.SrcUID, "target", row.DstAccount+" "+row.DstMailbox)
	state := store.TransferRolledBack
	switch {
	case inTarget:
		row.DstUID, row.DstUIDValidity = uint32(dstUID), ddata.UIDValidity
		if move && inSource {
			row.State = store.TransferAppended
			if err := t.Store.UpdateTransfer(ctx, row); err != nil {
				return row, err
			}
			if err := src.RemoveUIDs(ctx, imap.UIDSetNum(imap.UID(row.SrcUID))); err != nil {
				return row, fmt.Errorf("source: %w", err)
			}
		}
		state = store.TransferDone
	case dstGone:
		log.Warn("transfer: target folder gone; the message stays in the source", "in_source", inSource)
	case row.State == store.TransferAppended && row.DstUID != 0 && ddata.UIDValidity == row.DstUIDValidity:
		// Appended and confirmed, then deleted from the target by
		// someone: not ours to bring back.
		if !inSource {
			log.Warn("transfer: message deleted from both accounts meanwhile")
		}
	case inSource && !move:
		uid, err := t.appendAgain(ctx, cs, &row, ddata)
		if err != nil {
			return row, err
		}
		row.DstUID, row.DstUIDValidity = uint32(uid), ddata.UIDValidity
		state = store.TransferDone
	case !inSource:
		log.Warn("transfer: message gone from the source and never reached the target (deleted meanwhile)")
	}
	row.State = state
	if err := t.Store.UpdateTransfer(ctx, row); err != nil {
		return row, err
	}
	return row, nil
}

// appendAgain appends an interrupted COPY's message once more, first
// journaling the target's UIDNEXT so that a crash meanwhile is settled
// the same way.
func (t *Transfers) appendAgain(ctx context.Context, cs *transferConns, row *store.Transfer, ddata *imap.SelectData) (imap.UID, error) {
	row.DstUIDValidity, row.DstUIDNext, row.DstUID = ddata.UIDValidity, uint32(ddata.UIDNext), 0
	row.State = store.TransferStarted
	if err := t.Store.UpdateTransfer(ctx, *row); err != nil {
		return 0, err
	}
	src, _, err := cs.get(ctx, row.SrcAccount, row.SrcMailbox, true)
	if err != nil {
		return 0, err
	}
	metas, err := src.FetchMeta(ctx, imap.UIDSetNum(imap.UID(row.SrcUID)))
	if err != nil {
		return 0, err
	}
	if len(metas) != 1 {
		return 0, fmt.Errorf("source UID %d: %w", row.SrcUID, upstream.ErrNoMessage)
	}
	dst, _, err := cs.get(ctx, row.DstAccount, row.DstMailbox, false)
	if err != nil {
		return 0, err
	}
	flags, _ := splitFlags(withoutRecent(metas[0].Flags), ddata.PermanentFlags)
	if err := t.crashPoint("append"); err != nil {
		return 0, err
	}
	ar, err := dst.AppendFrom(ctx, row.DstMailbox, &imap.AppendOptions{Flags: flags, Time: metas[0].InternalDate}, src, imap.UID(row.SrcUID))
	if err != nil {
		return 0, err
	}
	if ar.UID != 0 && ar.UIDValidity == ddata.UIDValidity {
		return ar.UID, nil
	}
	uid, ok, err := t.findInTarget(ctx, dst, *row, ddata.UIDValidity)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, errors.New("appended message not found in the target")
	}
	return uid, nil
}

// targetHas reports whether the target mailbox (selected on dst, with
// ddata) has row's message, and its UID there.
func (t *Transfers) targetHas(ctx context.Context, dst *upstream.Client, ddata *imap.SelectData, row store.Transfer) (imap.UID, bool, error) {
	if row.DstUID != 0 && ddata.UIDValidity == row.DstUIDValidity {
		have, err := dst.HasUIDs(ctx, imap.UIDSetNum(imap.UID(row.DstUID)))
		return imap.UID(row.DstUID), len(have) == 1, err
	}
	return t.findInTarget(ctx, dst, row, ddata.UIDValidity)
}

// findInTarget searches the target mailbox (selected on dst, whose
// UIDVALIDITY is validity) for row's message. Above the row's UIDNEXT
// only while the UIDVALIDITY is the row's; the lowest match wins.
func (t *Transfers) findInTarget(ctx context.Context, dst *upstream.Client, row store.Transfer, validity uint32) (imap.UID, bool, error) {
	q := upstream.MessageQuery{Size: row.Size, MessageID: row.MessageID, InternalDate: row.InternalDate}
	if validity == row.DstUIDValidity {
		q.MinUID = imap.UID(row.DstUIDNext)
	}
	uids, err := dst.FindMessages(ctx, q)
	if err != nil || len(uids) == 0 {
		return 0, false, err
	}
	if len(uids) > 1 {
		t.log().Warn("transfer: several messages in the target match an appended one; taking the first",
			"account", row.DstAccount, "mailbox", row.DstMailbox, "uids", fmt.Sprint(uids))
	}
	return uids[0], true, nil
}

// withoutRecent drops \Recent, which APPEND cannot set.
func withoutRecent(flags []imap.Flag) []imap.Flag {
	var out []imap.Flag
	for _, f := range flags {
		if !hasFlag([]imap.Flag{`\Recent`}, f) {
			out = append(out, f)
		}
	}
	return out
}

// isNoMailbox reports whether err is an upstream's NO to a SELECT (the
// mailbox is gone), as opposed to the upstream being unreachable.
func isNoMailbox(err error) bool {
	ie, ok := errors.AsType[*imap.Error](err)
	return ok && ie.Type == imap.StatusResponseTypeNo
}
