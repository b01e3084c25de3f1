package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// AddAppPassword implements Store. ap.ID is ignored; the new id is
// returned. A zero ap.Created is set to now.
func (s *SQLite) AddAppPassword(ctx context.Context, ap AppPassword) (int64, error) {
	if ap.Created.IsZero() {
		ap.Created = time.Now()
	}
	if err := checkTimes(ap.Created, ap.Expires, ap.LastUsed, ap.Revoked); err != nil {
		return 0, err
	}
	var id int64
	err := s.write.QueryRowContext(ctx, `INSERT INTO app_passwords
	(username, name, hash, read_only, account, created, expires, last_used, last_ip, revoked)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT DO NOTHING
	RETURNING id`,
		ap.User, ap.Name, ap.Hash, ap.ReadOnly, ap.Account, nanos(ap.Created), nanos(ap.Expires),
		nanos(ap.LastUsed), addrText(ap.LastIP), nanos(ap.Revoked)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrExists
	} else if err != nil {
		return 0, fmt.Errorf("store: add app password: %w", err)
	}
	return id, nil
}

const appPasswordColumns = `id, username, name, hash, read_only, account, created, expires, last_used, last_ip, revoked`

// scanAppPassword reads one row of appPasswordColumns.
func scanAppPassword(row interface{ Scan(...any) error }) (AppPassword, error) {
	var ap AppPassword
	var created, expires, lastUsed, revoked sql.NullInt64
	var lastIP string
	if err := row.Scan(&ap.ID, &ap.User, &ap.Name, &ap.Hash, &ap.ReadOnly, &ap.Account,
		&created, &expires, &lastUsed, &lastIP, &revoked); err != nil {
		return AppPassword{}, err
	}
	ap.Created, ap.Expires = fromNanos(created), fromNanos(expires)
	ap.LastUsed, ap.Revoked = fromNanos(lastUsed), fromNanos(revoked)
	var err error
	ap.LastIP, err = parseAddr(lastIP)
	return ap, err
}

// ListAppPasswords implements Store. Revoked app passwords are listed too,
// oldest first.
func (s *SQLite) ListAppPasswords(ctx context.Context, user string) ([]AppPassword, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+appPasswordColumns+`
	FROM app_passwords WHERE username = ? ORDER BY id`, user)
	if err != nil {
		return nil, fmt.Errorf("store: list app passwords: %w", err)
	}
	defer rows.Close()
	var aps []AppPassword
	for rows.Next() {
		ap, err := scanAppPassword(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list app passwords: %w", err)
		}
		aps = append(aps, ap)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list app passwords: %w", err)
	}
	return aps, nil
}

// FindAppPassword implements Store. Revoked app passwords are never found;
// expiry is left to the caller, whose clock decides.
func (s *SQLite) FindAppPassword(ctx context.Context, user string, hash []byte) (AppPassword, error) {
	ap, err := scanAppPassword(s.read.QueryRowContext(ctx, `SELECT `+appPasswordColumns+`
	FROM app_passwords WHERE username = ? AND hash = ? AND revoked IS NULL
	ORDER BY id DESC LIMIT 1`, user, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return AppPassword{}, ErrNotFound
	} else if err != nil {
		return AppPassword{}, fmt.Errorf("store: find app password: %w", err)
	}
	return ap, nil
}

// TouchAppPassword implements Store.
func (s *SQLite) TouchAppPassword(ctx context.Context, id int64, when time.Time, ip netip.Addr) error {
	if err := checkTimes(when); err != nil {
		return err
	}
	return s.execOne(ctx, "touch app password",
		`UPDATE app_passwords SET last_used = ?, last_ip = ? WHERE id = ?`, nanos(when), addrText(ip), id)
}

// RevokeAppPassword implements Store. It revokes the live app password of
// that name; ErrNotFound when there is none.
func (s *SQLite) RevokeAppPassword(ctx context.Context, user, name string, when time.Time) error {
	if when.IsZero() {
		when = time.Now()
	}
	if err := checkTimes(when); err != nil {
		return err
	}
	return s.execOne(ctx, "revoke app password",
		`UPDATE app_passwords SET revoked = ? WHERE username = ? AND name = ? AND revoked IS NULL`,
		nanos(when), user, name)
}

// revokedChunk bounds the ids per query, well under SQLite's limit on
// bound parameters.
const revokedChunk = 500

// RevokedAppPasswords implements Store. The result keeps the order of ids.
func (s *SQLite) RevokedAppPasswords(ctx context.Context, ids []int64) ([]int64, error) {
	live := make(map[int64]bool, len(ids))
	for start := 0; start < len(ids); start += revokedChunk {
		chunk := ids[start:min(start+revokedChunk, len(ids))]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		marks := strings.Repeat(",?", len(chunk))[1:]
		rows, err := s.read.QueryContext(ctx, `SELECT id FROM app_passwords
	WHERE revoked IS NULL AND id IN (`+marks+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("store: revoked app passwords: %w", err)
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: revoked app passwords: %w", err)
			}
			live[id] = true
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("store: revoked app passwords: %w", err)
		}
	}
	var revoked []int64
	for _, id := range ids {
		if !live[id] {
			revoked = append(revoked, id)
		}
	}
	return revoked, nil
}
