package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
)

// SetKeywords implements Store.
func (s *SQLite) SetKeywords(ctx context.Context, vmailboxID int64, vuid uint32, keywords []string) error {
	kws := slices.Clone(keywords)
	slices.Sort(kws)
	kws = slices.Compact(kws)
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM vmessages WHERE vmailbox = ? AND vuid = ?`, vmailboxID, vuid).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return fmt.Errorf("store: set keywords: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM vkeywords WHERE vmailbox = ? AND vuid = ?`, vmailboxID, vuid); err != nil {
			return fmt.Errorf("store: set keywords: %w", err)
		}
		if len(kws) == 0 {
			return nil
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO vkeywords (vmailbox, vuid, keyword) VALUES (?, ?, ?)`)
		if err != nil {
			return fmt.Errorf("store: set keywords: %w", err)
		}
		defer stmt.Close()
		for _, kw := range kws {
			if _, err := stmt.ExecContext(ctx, vmailboxID, vuid, kw); err != nil {
				return fmt.Errorf("store: set keywords: %w", err)
			}
		}
		return nil
	})
}

// Keywords implements Store.
func (s *SQLite) Keywords(ctx context.Context, vmailboxID int64, vuids []uint32) (map[uint32][]string, error) {
	if len(vuids) == 0 {
		return s.keywords(ctx, vmailboxID, "", nil)
	}
	return s.keywords(ctx, vmailboxID, sqlKeywords, vuids)
}

// MailboxKeywords implements Store.
func (s *SQLite) MailboxKeywords(ctx context.Context, vmailboxID int64) (map[uint32][]string, error) {
	return s.keywords(ctx, vmailboxID, sqlMailboxKeywords, nil)
}

// keywords runs a keyword query (none: an empty result) after checking
// that the mailbox exists.
func (s *SQLite) keywords(ctx context.Context, vmailboxID int64, query string, vuids []uint32) (map[uint32][]string, error) {
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("store: keywords: %w", err)
	}
	defer tx.Rollback()
	if _, err := uidNext(ctx, tx, vmailboxID); err != nil {
		return nil, fmt.Errorf("store: keywords: %w", err)
	}
	m := map[uint32][]string{}
	if query == "" {
		return m, nil
	}
	args := []any{vmailboxID}
	if vuids != nil {
		args = append(args, uidsJSON(vuids))
	}
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: keywords: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var vuid uint32
		var kw string
		if err := rows.Scan(&vuid, &kw); err != nil {
			return nil, fmt.Errorf("store: keywords: %w", err)
		}
		m[vuid] = append(m[vuid], kw)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: keywords: %w", err)
	}
	return m, nil
}
