package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// maxFailureCount saturates a failure counter, as auth's in-memory one
// does; the delay it drives is long capped by then.
const maxFailureCount = 1 << 16

// AddFailure implements Store. One UPSERT decides between restarting and
// incrementing the count, so concurrent callers in several processes never
// lose a failure. Counters whose own window has passed are pruned on the
// way; each row keeps the end of the window it was written with, so callers
// with different windows do not prune each other's live counters.
func (s *SQLite) AddFailure(ctx context.Context, key string, now time.Time, window time.Duration) (int, error) {
	if err := checkTimes(now); err != nil {
		return 0, err
	}
	expires := now.Add(window)
	if expires.After(maxStoredTime) {
		expires = maxStoredTime
	}
	var count int
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM failures WHERE expires <= ?`, nanos(now)); err != nil {
			return fmt.Errorf("store: add failure: %w", err)
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO failures (counter_key, failure_count, last_failure, expires)
	VALUES (?1, 1, ?2, ?3)
	ON CONFLICT (counter_key) DO UPDATE SET
		failure_count = CASE
			WHEN excluded.last_failure - failures.last_failure < ?4
			THEN min(failures.failure_count + 1, ?5)
			ELSE 1 END,
		last_failure = max(failures.last_failure, excluded.last_failure),
		expires = max(failures.expires, excluded.expires)
	RETURNING failure_count`,
			key, nanos(now), nanos(expires), int64(window), maxFailureCount).Scan(&count)
		if err != nil {
			return fmt.Errorf("store: add failure: %w", err)
		}
		return nil
	})
	return count, err
}

// CountFailures implements Store.
func (s *SQLite) CountFailures(ctx context.Context, key string, now time.Time, window time.Duration) (int, error) {
	if err := checkTimes(now); err != nil {
		return 0, err
	}
	var count int
	err := s.read.QueryRowContext(ctx, `SELECT failure_count FROM failures
	WHERE counter_key = ? AND ? - last_failure < ?`, key, nanos(now), int64(window)).Scan(&count)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	} else if err != nil {
		return 0, fmt.Errorf("store: count failures: %w", err)
	}
	return count, nil
}

// CountFailuresMany implements Store.
func (s *SQLite) CountFailuresMany(ctx context.Context, keys []string, now time.Time, window time.Duration) ([]int, error) {
	counts := make([]int, len(keys))
	if len(keys) == 0 {
		return counts, nil
	}
	if err := checkTimes(now); err != nil {
		return nil, err
	}
	args := []any{nanos(now), int64(window)}
	for _, k := range keys {
		args = append(args, k)
	}
	rows, err := s.read.QueryContext(ctx, `SELECT counter_key, failure_count FROM failures
	WHERE ? - last_failure < ? AND counter_key IN (?`+strings.Repeat(", ?", len(keys)-1)+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: count failures: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		var n int
		if err := rows.Scan(&key, &n); err != nil {
			return nil, fmt.Errorf("store: count failures: %w", err)
		}
		for i, k := range keys {
			if k == key {
				counts[i] = n
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: count failures: %w", err)
	}
	return counts, nil
}

// ResetFailures implements Store. Resetting an unknown key is not an error.
func (s *SQLite) ResetFailures(ctx context.Context, key string) error {
	if _, err := s.write.ExecContext(ctx, `DELETE FROM failures WHERE counter_key = ?`, key); err != nil {
		return fmt.Errorf("store: reset failures: %w", err)
	}
	return nil
}

// AddEvent implements Store. e.ID is ignored; a zero e.Time is set to now.
func (s *SQLite) AddEvent(ctx context.Context, e Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if err := checkTimes(e.Time); err != nil {
		return err
	}
	if _, err := s.write.ExecContext(ctx, `INSERT INTO events (time, username, kind, method, detail, remote)
	VALUES (?, ?, ?, ?, ?, ?)`,
		nanos(e.Time), e.User, e.Kind, e.Method, e.Detail, addrText(e.Remote)); err != nil {
		return fmt.Errorf("store: add event: %w", err)
	}
	return nil
}

// Events implements Store. Events are ordered by Time, newest first, and
// in reverse order of addition among equal times; limit <= 0 means all.
func (s *SQLite) Events(ctx context.Context, user string, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	query := `SELECT id, time, username, kind, method, detail, remote FROM events`
	args := []any{}
	if user != "" {
		query += ` WHERE username = ?`
		args = append(args, user)
	}
	query += ` ORDER BY time DESC, id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := s.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	defer rows.Close()
	var events []Event
	for rows.Next() {
		var e Event
		var t sql.NullInt64
		var remote string
		if err := rows.Scan(&e.ID, &t, &e.User, &e.Kind, &e.Method, &e.Detail, &remote); err != nil {
			return nil, fmt.Errorf("store: events: %w", err)
		}
		e.Time = fromNanos(t)
		if e.Remote, err = parseAddr(remote); err != nil {
			return nil, err
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	return events, nil
}
