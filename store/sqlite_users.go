package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// AddUser implements Store.
func (s *SQLite) AddUser(ctx context.Context, u User) error {
	if u.Created.IsZero() {
		u.Created = time.Now()
	}
	if u.Updated.IsZero() {
		u.Updated = u.Created
	}
	if err := checkTimes(u.Created, u.Updated); err != nil {
		return err
	}
	res, err := s.write.ExecContext(ctx, `INSERT INTO users
	(name, password_hash, disabled, sealed_upstream_password, created, updated)
	VALUES (?, ?, ?, ?, ?, ?)
	ON CONFLICT DO NOTHING`,
		u.Name, u.PasswordHash, u.Disabled, u.SealedUpstreamPassword, nanos(u.Created), nanos(u.Updated))
	if err != nil {
		return fmt.Errorf("store: add user: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: add user: %w", err)
	} else if n == 0 {
		return ErrExists
	}
	return nil
}

const userColumns = `name, password_hash, disabled, sealed_upstream_password, created, updated`

// scanUser reads one row of userColumns.
func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	var created, updated sql.NullInt64
	if err := row.Scan(&u.Name, &u.PasswordHash, &u.Disabled, &u.SealedUpstreamPassword, &created, &updated); err != nil {
		return User{}, err
	}
	u.Created, u.Updated = fromNanos(created), fromNanos(updated)
	return u, nil
}

// GetUser implements Store.
func (s *SQLite) GetUser(ctx context.Context, name string) (User, error) {
	u, err := scanUser(s.read.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	} else if err != nil {
		return User{}, fmt.Errorf("store: get user: %w", err)
	}
	return u, nil
}

// ListUsers implements Store.
func (s *SQLite) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT `+userColumns+` FROM users ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: list users: %w", err)
	}
	defer rows.Close()
	var users []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list users: %w", err)
		}
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list users: %w", err)
	}
	return users, nil
}

// CredentialUsers implements Store.
func (s *SQLite) CredentialUsers(ctx context.Context) ([]string, error) {
	rows, err := s.read.QueryContext(ctx,
		`SELECT username FROM totp UNION SELECT username FROM app_passwords ORDER BY username`)
	if err != nil {
		return nil, fmt.Errorf("store: list credential users: %w", err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("store: list credential users: %w", err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list credential users: %w", err)
	}
	return names, nil
}

// SetPasswordHash implements Store.
func (s *SQLite) SetPasswordHash(ctx context.Context, name, hash string) error {
	return s.execOne(ctx, "set password hash",
		`UPDATE users SET password_hash = ?, updated = ? WHERE name = ?`, hash, nanos(time.Now()), name)
}

// SetDisabled implements Store.
func (s *SQLite) SetDisabled(ctx context.Context, name string, disabled bool) error {
	return s.execOne(ctx, "set disabled",
		`UPDATE users SET disabled = ?, updated = ? WHERE name = ?`, disabled, nanos(time.Now()), name)
}

// SetSealedUpstreamPassword implements Store.
func (s *SQLite) SetSealedUpstreamPassword(ctx context.Context, name string, sealed []byte) error {
	return s.execOne(ctx, "set upstream password",
		`UPDATE users SET sealed_upstream_password = ?, updated = ? WHERE name = ?`, sealed, nanos(time.Now()), name)
}

// DeleteUser implements Store. It removes the user's TOTP enrolment and
// app passwords too, so that a user added again later under the same name
// starts clean; RevokedAppPasswords reports the deleted ids.
func (s *SQLite) DeleteUser(ctx context.Context, name string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM users WHERE name = ?`, name)
		if err != nil {
			return fmt.Errorf("store: delete user: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("store: delete user: %w", err)
		} else if n == 0 {
			return ErrNotFound
		}
		for _, q := range []string{
			`DELETE FROM totp WHERE username = ?`,
			`DELETE FROM totp_used WHERE username = ?`,
			`DELETE FROM totp_grace WHERE username = ?`,
			`DELETE FROM app_passwords WHERE username = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, name); err != nil {
				return fmt.Errorf("store: delete user: %w", err)
			}
		}
		return nil
	})
}

// PutTOTP implements Store. A new enrolment also ends the user's grace
// windows, which were earned with the previous secret.
func (s *SQLite) PutTOTP(ctx context.Context, t TOTP) error {
	if t.Created.IsZero() {
		t.Created = time.Now()
	}
	if err := checkTimes(t.Created); err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO totp (username, sealed_secret, confirmed, created)
	VALUES (?, ?, ?, ?)
	ON CONFLICT (username) DO UPDATE SET
		sealed_secret = excluded.sealed_secret,
		confirmed = excluded.confirmed,
		created = excluded.created`,
			t.User, t.SealedSecret, t.Confirmed, nanos(t.Created)); err != nil {
			return fmt.Errorf("store: put totp: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM totp_grace WHERE username = ?`, t.User); err != nil {
			return fmt.Errorf("store: put totp: %w", err)
		}
		return nil
	})
}

// GetTOTP implements Store.
func (s *SQLite) GetTOTP(ctx context.Context, user string) (TOTP, error) {
	t := TOTP{User: user}
	var created sql.NullInt64
	err := s.read.QueryRowContext(ctx, `SELECT sealed_secret, confirmed, created FROM totp WHERE username = ?`, user).
		Scan(&t.SealedSecret, &t.Confirmed, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return TOTP{}, ErrNotFound
	} else if err != nil {
		return TOTP{}, fmt.Errorf("store: get totp: %w", err)
	}
	t.Created = fromNanos(created)
	return t, nil
}

// ConfirmTOTP implements Store.
func (s *SQLite) ConfirmTOTP(ctx context.Context, user string) error {
	return s.execOne(ctx, "confirm totp", `UPDATE totp SET confirmed = 1 WHERE username = ?`, user)
}

// DeleteTOTP implements Store. It ends the user's grace windows too.
func (s *SQLite) DeleteTOTP(ctx context.Context, user string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM totp WHERE username = ?`, user)
		if err != nil {
			return fmt.Errorf("store: delete totp: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("store: delete totp: %w", err)
		} else if n == 0 {
			return ErrNotFound
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM totp_grace WHERE username = ?`, user); err != nil {
			return fmt.Errorf("store: delete totp: %w", err)
		}
		return nil
	})
}

// UseTOTPStep implements Store. The primary key on (user, step) makes the
// check and the record one atomic INSERT, across processes too; steps are
// forgotten keep after they were used, by the clock of the process.
func (s *SQLite) UseTOTPStep(ctx context.Context, user string, step int64, keep time.Duration) (bool, error) {
	now := time.Now()
	var fresh bool
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM totp_used WHERE used < ?`, nanos(now.Add(-keep))); err != nil {
			return fmt.Errorf("store: use totp step: %w", err)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO totp_used (username, step, used) VALUES (?, ?, ?)
	ON CONFLICT DO NOTHING`, user, step, nanos(now))
		if err != nil {
			return fmt.Errorf("store: use totp step: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("store: use totp step: %w", err)
		}
		fresh = n == 1
		return nil
	})
	return fresh, err
}

// PutTOTPGrace implements Store. A zero until removes the grace window.
// Grace windows that ended before now are pruned on the way.
func (s *SQLite) PutTOTPGrace(ctx context.Context, user string, ip netip.Addr, until time.Time) error {
	if err := checkTimes(until); err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM totp_grace WHERE valid_until < ?`, nanos(time.Now())); err != nil {
			return fmt.Errorf("store: put totp grace: %w", err)
		}
		if until.IsZero() {
			if _, err := tx.ExecContext(ctx, `DELETE FROM totp_grace WHERE username = ? AND ip = ?`,
				user, addrText(ip)); err != nil {
				return fmt.Errorf("store: put totp grace: %w", err)
			}
			return nil
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO totp_grace (username, ip, valid_until) VALUES (?, ?, ?)
	ON CONFLICT (username, ip) DO UPDATE SET valid_until = excluded.valid_until`,
			user, addrText(ip), nanos(until)); err != nil {
			return fmt.Errorf("store: put totp grace: %w", err)
		}
		return nil
	})
}

// TOTPGraceUntil implements Store.
func (s *SQLite) TOTPGraceUntil(ctx context.Context, user string, ip netip.Addr) (time.Time, error) {
	var until sql.NullInt64
	err := s.read.QueryRowContext(ctx, `SELECT valid_until FROM totp_grace WHERE username = ? AND ip = ?`,
		user, addrText(ip)).Scan(&until)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	} else if err != nil {
		return time.Time{}, fmt.Errorf("store: totp grace: %w", err)
	}
	return fromNanos(until), nil
}
