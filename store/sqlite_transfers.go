package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"
)

const (
	sqlAddTransfer = `INSERT INTO transfers (username, kind, state,
		src_account, src_mailbox, src_uidvalidity, src_uid,
		dst_account, dst_mailbox, dst_uidvalidity, dst_uidnext, dst_uid,
		size, message_id, internal_date, created, updated)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlUpdateTransfer = `UPDATE transfers
	SET state = ?, dst_uidvalidity = ?, dst_uidnext = ?, dst_uid = ?, updated = ?
	WHERE id = ?`
	sqlSetTransferStates = `UPDATE transfers SET state = ?, updated = ?
	WHERE id IN (SELECT value FROM json_each(?))`
	sqlTransferColumns = `id, username, kind, state,
		src_account, src_mailbox, src_uidvalidity, src_uid,
		dst_account, dst_mailbox, dst_uidvalidity, dst_uidnext, dst_uid,
		size, message_id, internal_date, created, updated`
	sqlListTransfers     = `SELECT ` + sqlTransferColumns + ` FROM transfers WHERE username = ? ORDER BY id`
	sqlListOpenTransfers = `SELECT ` + sqlTransferColumns + ` FROM transfers
	WHERE username = ? AND state IN ('started', 'appended') ORDER BY id`
	sqlPruneTransfers = `DELETE FROM transfers
	WHERE state NOT IN ('started', 'appended') AND updated < ?`
)

// checkTransfer reports what the transfers table cannot hold.
func checkTransfer(t Transfer) error {
	switch {
	case t.Kind != TransferCopy && t.Kind != TransferMove:
		return fmt.Errorf("store: transfer: unknown kind %q", t.Kind)
	case t.State != TransferStarted && t.State != TransferAppended && !t.State.Finished():
		return fmt.Errorf("store: transfer: unknown state %q", t.State)
	}
	return checkTimes(t.InternalDate, t.Created)
}

// AddTransfer implements Store.
func (s *SQLite) AddTransfer(ctx context.Context, t Transfer) (int64, error) {
	if err := checkTransfer(t); err != nil {
		return 0, err
	}
	now := time.Now()
	if t.Created.IsZero() {
		t.Created = now
	}
	res, err := s.write.ExecContext(ctx, sqlAddTransfer, t.User, string(t.Kind), string(t.State),
		t.SrcAccount, t.SrcMailbox, int64(t.SrcUIDValidity), int64(t.SrcUID),
		t.DstAccount, t.DstMailbox, int64(t.DstUIDValidity), int64(t.DstUIDNext), int64(t.DstUID),
		t.Size, t.MessageID, nanos(t.InternalDate), t.Created.UnixNano(), now.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("store: add transfer: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("store: add transfer: %w", err)
	}
	return id, nil
}

// UpdateTransfer implements Store.
func (s *SQLite) UpdateTransfer(ctx context.Context, t Transfer) error {
	if t.State != TransferStarted && t.State != TransferAppended && !t.State.Finished() {
		return fmt.Errorf("store: transfer: unknown state %q", t.State)
	}
	return s.execOne(ctx, "update transfer", sqlUpdateTransfer, string(t.State),
		int64(t.DstUIDValidity), int64(t.DstUIDNext), int64(t.DstUID), time.Now().UnixNano(), t.ID)
}

// SetTransferStates implements Store.
func (s *SQLite) SetTransferStates(ctx context.Context, ids []int64, state TransferState) error {
	if len(ids) == 0 {
		return nil
	}
	if state != TransferStarted && state != TransferAppended && !state.Finished() {
		return fmt.Errorf("store: transfer: unknown state %q", state)
	}
	b := make([]byte, 0, 2+12*len(ids))
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	b = append(b, ']')
	if _, err := s.write.ExecContext(ctx, sqlSetTransferStates, string(state), time.Now().UnixNano(), string(b)); err != nil {
		return fmt.Errorf("store: set transfer states: %w", err)
	}
	return nil
}

// ListTransfers implements Store.
func (s *SQLite) ListTransfers(ctx context.Context, user string, unfinished bool) ([]Transfer, error) {
	q := sqlListTransfers
	if unfinished {
		q = sqlListOpenTransfers
	}
	rows, err := s.read.QueryContext(ctx, q, user)
	if err != nil {
		return nil, fmt.Errorf("store: list transfers: %w", err)
	}
	defer rows.Close()
	var out []Transfer
	for rows.Next() {
		t, err := scanTransfer(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list transfers: %w", err)
	}
	return out, nil
}

// scanTransfer reads one row of sqlTransferColumns.
func scanTransfer(rows *sql.Rows) (Transfer, error) {
	var (
		t                            Transfer
		kind, state                  string
		srcV, srcU, dstV, dstN, dstU int64
		internalDate                 sql.NullInt64
		created, updated             int64
	)
	err := rows.Scan(&t.ID, &t.User, &kind, &state,
		&t.SrcAccount, &t.SrcMailbox, &srcV, &srcU,
		&t.DstAccount, &t.DstMailbox, &dstV, &dstN, &dstU,
		&t.Size, &t.MessageID, &internalDate, &created, &updated)
	if err != nil {
		return t, fmt.Errorf("store: list transfers: %w", err)
	}
	t.Kind, t.State = TransferKind(kind), TransferState(state)
	t.SrcUIDValidity, t.SrcUID = uint32(srcV), uint32(srcU)
	t.DstUIDValidity, t.DstUIDNext, t.DstUID = uint32(dstV), uint32(dstN), uint32(dstU)
	t.InternalDate = fromNanos(internalDate)
	t.Created = time.Unix(0, created).UTC()
	t.Updated = time.Unix(0, updated).UTC()
	return t, nil
}

// PruneTransfers implements Store.
func (s *SQLite) PruneTransfers(ctx context.Context, before time.Time) (int, error) {
	if err := checkTimes(before); err != nil {
		return 0, err
	}
	if before.IsZero() {
		return 0, errors.New("store: prune transfers: zero time")
	}
	res, err := s.write.ExecContext(ctx, sqlPruneTransfers, before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("store: prune transfers: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: prune transfers: %w", err)
	}
	return int(n), nil
}
