package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// Batches of UIDs go to SQLite as one JSON array parameter, unpacked by
// json_each: one statement for any number of UIDs, instead of a statement
// per UID or a query text per batch size. TestSQLiteVMessagesPlans checks
// that these statements find rows through the indexes.
const (
	// sqlLookupUIDs: the known (uid, vuid) pairs of one source among a
	// JSON array of uids.
	sqlLookupUIDs = `SELECT uid, vuid FROM vmessages
	WHERE vmailbox = ?1 AND account = ?2 AND mailbox = ?3 AND uidvalidity = ?4
		AND uid IN (SELECT value FROM json_each(?5))`
	// sqlInsertUIDs maps a JSON array of uids to consecutive vuids from ?2.
	// (WHERE true keeps the parser from reading ON CONFLICT as a join's ON.)
	sqlInsertUIDs = `INSERT INTO vmessages (vmailbox, vuid, account, mailbox, uidvalidity, uid)
	SELECT ?1, ?2 + key, ?3, ?4, ?5, value FROM json_each(?6) WHERE true
	ON CONFLICT (vmailbox, account, mailbox, uidvalidity, uid) DO NOTHING
	RETURNING uid, vuid`
	sqlVMessages = `SELECT vuid, account, mailbox, uidvalidity, uid
	FROM vmessages WHERE vmailbox = ? ORDER BY vuid`
	// sqlSourceMessages: the planner, without statistics, would rather
	// walk the whole mailbox in vuid order than sort one source's rows.
	sqlSourceMessages = `SELECT vuid, account, mailbox, uidvalidity, uid
	FROM vmessages INDEXED BY vmessages_source
	WHERE vmailbox = ? AND account = ? AND mailbox = ? ORDER BY vuid`
	sqlForgetSource = `DELETE FROM vmessages
	WHERE vmailbox = ? AND account = ? AND mailbox = ? AND uidvalidity != ?
	RETURNING vuid`
	sqlRemoveVUIDs = `DELETE FROM vmessages
	WHERE vmailbox = ? AND vuid IN (SELECT value FROM json_each(?))`
	sqlKeywords = `SELECT vuid, keyword FROM vkeywords
	WHERE vmailbox = ? AND vuid IN (SELECT value FROM json_each(?)) ORDER BY vuid, keyword`
	sqlMailboxKeywords = `SELECT vuid, keyword FROM vkeywords
	WHERE vmailbox = ? ORDER BY vuid, keyword`
)

// uidsJSON encodes uids as a JSON array.
func uidsJSON(uids []uint32) string {
	b := make([]byte, 0, 2+11*len(uids))
	b = append(b, '[')
	for i, u := range uids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(u), 10)
	}
	return string(append(b, ']'))
}

// queryer is what *sql.DB and *sql.Tx have in common here.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// uidNext returns the UIDNEXT of a virtual mailbox, or ErrNotFound.
func uidNext(ctx context.Context, q queryer, vmailboxID int64) (int64, error) {
	var next int64
	err := q.QueryRowContext(ctx, `SELECT uidnext FROM vmailboxes WHERE id = ?`, vmailboxID).Scan(&next)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	return next, err
}

// MapUIDs implements Store. In its IMMEDIATE transaction, one statement
// finds the vuids of the uids already mapped and one inserts the rest with
// consecutive vuids from UIDNEXT (in increasing order of uid, duplicates
// of the input mapped once). The insert's ON CONFLICT DO NOTHING backs up
// the transaction: should a row appear in between after all, it is looked
// up instead of mapped twice.
func (s *SQLite) MapUIDs(ctx context.Context, vmailboxID int64, src Source, uids []uint32) ([]uint32, error) {
	if src.UIDValidity == 0 {
		return nil, errors.New("store: map uids: UIDVALIDITY 0")
	}
	sorted := slices.Clone(uids)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	if len(sorted) > 0 && sorted[0] == 0 {
		return nil, errors.New("store: map uids: UID 0")
	}
	vuids := make(map[uint32]uint32, len(sorted))
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		next, err := uidNext(ctx, tx, vmailboxID)
		if err != nil {
			return fmt.Errorf("store: map uids: %w", err)
		}
		if len(sorted) == 0 {
			return nil
		}
		lookup := func(uids []uint32) error {
			return collectPairs(ctx, tx, vuids, sqlLookupUIDs,
				vmailboxID, src.Account, src.Mailbox, src.UIDValidity, uidsJSON(uids))
		}
		if err := lookup(sorted); err != nil {
			return err
		}
		fresh := slices.DeleteFunc(slices.Clone(sorted), func(u uint32) bool { _, ok := vuids[u]; return ok })
		if len(fresh) == 0 {
			return nil
		}
		last := next + int64(len(fresh)) - 1
		if last > MaxVUID {
			return fmt.Errorf("%w: UIDNEXT %d, %d new messages", ErrUIDsExhausted, next, len(fresh))
		}
		if err := collectPairs(ctx, tx, vuids, sqlInsertUIDs,
			vmailboxID, next, src.Account, src.Mailbox, src.UIDValidity, uidsJSON(fresh)); err != nil {
			return err
		}
		if len(vuids) < len(sorted) {
			if err := lookup(fresh); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE vmailboxes SET uidnext = ? WHERE id = ?`, last+1, vmailboxID); err != nil {
			return fmt.Errorf("store: map uids: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]uint32, len(uids))
	for i, u := range uids {
		v, ok := vuids[u]
		if !ok {
			return nil, fmt.Errorf("store: map uids: UID %d left unmapped", u)
		}
		out[i] = v
	}
	return out, nil
}

// collectPairs runs a query returning (uid, vuid) rows and adds them to m.
func collectPairs(ctx context.Context, tx *sql.Tx, m map[uint32]uint32, query string, args ...any) error {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("store: map uids: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var uid, vuid uint32
		if err := rows.Scan(&uid, &vuid); err != nil {
			return fmt.Errorf("store: map uids: %w", err)
		}
		m[uid] = vuid
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: map uids: %w", err)
	}
	return nil
}

// VMessages implements Store.
func (s *SQLite) VMessages(ctx context.Context, vmailboxID int64) ([]VMessage, error) {
	return s.vmessages(ctx, "vmessages", vmailboxID, sqlVMessages, vmailboxID)
}

// SourceMessages implements Store.
func (s *SQLite) SourceMessages(ctx context.Context, vmailboxID int64, account, mailbox string) ([]VMessage, error) {
	return s.vmessages(ctx, "source messages", vmailboxID, sqlSourceMessages, vmailboxID, account, mailbox)
}

// vmessages runs a query of VMessage rows in one read transaction, after
// checking that the virtual mailbox exists.
func (s *SQLite) vmessages(ctx context.Context, what string, vmailboxID int64, query string, args ...any) ([]VMessage, error) {
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer tx.Rollback()
	if _, err := uidNext(ctx, tx, vmailboxID); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	defer rows.Close()
	msgs := []VMessage{}
	for rows.Next() {
		var m VMessage
		if err := rows.Scan(&m.VUID, &m.Account, &m.Mailbox, &m.UIDValidity, &m.UID); err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	return msgs, nil
}

// ForgetSource implements Store.
func (s *SQLite) ForgetSource(ctx context.Context, vmailboxID int64, account, mailbox string, keep uint32) ([]uint32, error) {
	vuids := []uint32{}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := uidNext(ctx, tx, vmailboxID); err != nil {
			return fmt.Errorf("store: forget source: %w", err)
		}
		rows, err := tx.QueryContext(ctx, sqlForgetSource, vmailboxID, account, mailbox, keep)
		if err != nil {
			return fmt.Errorf("store: forget source: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var v uint32
			if err := rows.Scan(&v); err != nil {
				return fmt.Errorf("store: forget source: %w", err)
			}
			vuids = append(vuids, v)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("store: forget source: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(vuids)
	return vuids, nil
}

// RemoveVUIDs implements Store.
func (s *SQLite) RemoveVUIDs(ctx context.Context, vmailboxID int64, vuids []uint32) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := uidNext(ctx, tx, vmailboxID); err != nil {
			return fmt.Errorf("store: remove vuids: %w", err)
		}
		if len(vuids) == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, sqlRemoveVUIDs, vmailboxID, uidsJSON(vuids)); err != nil {
			return fmt.Errorf("store: remove vuids: %w", err)
		}
		return nil
	})
}
