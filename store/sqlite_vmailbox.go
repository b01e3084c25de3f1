package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"
)

// vmailboxClock is the clock UIDVALIDITYs are taken from; tests replace it.
var vmailboxClock = time.Now

// vmailboxColumns are the columns scanVMailbox reads, in its order.
const vmailboxColumns = `id, username, name, uidvalidity, uidnext, created`

// scanVMailbox reads one row of vmailboxColumns.
func scanVMailbox(row interface{ Scan(...any) error }) (VMailbox, error) {
	var m VMailbox
	var created sql.NullInt64
	if err := row.Scan(&m.ID, &m.User, &m.Name, &m.UIDValidity, &m.UIDNext, &created); err != nil {
		return VMailbox{}, err
	}
	m.Created = fromNanos(created)
	return m, nil
}

// VMailbox implements Store. An existing mailbox is read without taking
// the write lock; a missing one is created in an IMMEDIATE transaction that
// looks again first, so that two processes creating it at once agree.
func (s *SQLite) VMailbox(ctx context.Context, user, name string) (VMailbox, error) {
	const q = `SELECT ` + vmailboxColumns + ` FROM vmailboxes WHERE username = ? AND name = ?`
	m, err := scanVMailbox(s.read.QueryRowContext(ctx, q, user, name))
	if err == nil {
		return m, nil
	} else if !errors.Is(err, sql.ErrNoRows) {
		return VMailbox{}, fmt.Errorf("store: vmailbox %s: %w", name, err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		m, err = scanVMailbox(tx.QueryRowContext(ctx, q, user, name))
		if err == nil {
			return nil
		} else if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: vmailbox %s: %w", name, err)
		}
		var last int64
		err = tx.QueryRowContext(ctx, `SELECT last_uidvalidity FROM vmailbox_uidvalidity WHERE username = ?`, user).Scan(&last)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: vmailbox %s: %w", name, err)
		}
		now := vmailboxClock()
		if err := checkTimes(now); err != nil {
			return err
		}
		uv, err := nextUIDValidity(now, last)
		if err != nil {
			return fmt.Errorf("store: vmailbox %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO vmailbox_uidvalidity (username, last_uidvalidity) VALUES (?, ?)
	ON CONFLICT (username) DO UPDATE SET last_uidvalidity = excluded.last_uidvalidity`, user, uv); err != nil {
			return fmt.Errorf("store: vmailbox %s: %w", name, err)
		}
		m = VMailbox{User: user, Name: name, UIDValidity: uv, UIDNext: 1, Created: fromNanos(nanos(now))}
		err = tx.QueryRowContext(ctx, `INSERT INTO vmailboxes (username, name, uidvalidity, uidnext, created)
	VALUES (?, ?, ?, 1, ?) RETURNING id`, user, name, uv, nanos(now)).Scan(&m.ID)
		if err != nil {
			return fmt.Errorf("store: vmailbox %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return VMailbox{}, err
	}
	return m, nil
}

// nextUIDValidity returns the UIDVALIDITY for a new mailbox created at now
// by a user whose greatest so far is last (0: none): the clock's seconds
// (clamped to 1 .. 2^32-1) unless that is not above last, then last+1.
func nextUIDValidity(now time.Time, last int64) (uint32, error) {
	if last >= math.MaxUint32 {
		return 0, errors.New("no UIDVALIDITY left for this user")
	}
	clock := min(max(now.Unix(), 1), math.MaxUint32)
	return uint32(max(clock, last+1)), nil
}

// ListVMailboxes implements Store.
func (s *SQLite) ListVMailboxes(ctx context.Context, user string) ([]VMailbox, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+vmailboxColumns+` FROM vmailboxes
	WHERE username = ? ORDER BY name`, user)
	if err != nil {
		return nil, fmt.Errorf("store: list vmailboxes: %w", err)
	}
	defer rows.Close()
	var list []VMailbox
	for rows.Next() {
		m, err := scanVMailbox(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list vmailboxes: %w", err)
		}
		list = append(list, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list vmailboxes: %w", err)
	}
	return list, nil
}

// RenameVMailbox implements Store.
func (s *SQLite) RenameVMailbox(ctx context.Context, user, from, to string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var id int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM vmailboxes WHERE username = ? AND name = ?`, user, from).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return fmt.Errorf("store: rename vmailbox %s: %w", from, err)
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM vmailboxes WHERE username = ? AND name = ?`, user, to).Scan(&n); err != nil {
			return fmt.Errorf("store: rename vmailbox %s: %w", from, err)
		}
		if n > 0 {
			return ErrExists
		}
		if _, err := tx.ExecContext(ctx, `UPDATE vmailboxes SET name = ? WHERE id = ?`, to, id); err != nil {
			return fmt.Errorf("store: rename vmailbox %s: %w", from, err)
		}
		return nil
	})
}

// DeleteVMailbox implements Store. The foreign keys' cascades remove the
// mailbox's messages and keywords in the same statement.
func (s *SQLite) DeleteVMailbox(ctx context.Context, user, name string) error {
	return s.execOne(ctx, "delete vmailbox "+name,
		`DELETE FROM vmailboxes WHERE username = ? AND name = ?`, user, name)
}
