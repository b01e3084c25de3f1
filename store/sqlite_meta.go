package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// GetMeta implements Store.
func (s *SQLite) GetMeta(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := s.read.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: get meta %s: %w", name, err)
	}
	return v, nil
}

// PutMeta implements Store; it replaces an existing value.
func (s *SQLite) PutMeta(ctx context.Context, name string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	if _, err := s.write.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES (?, ?)
	ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, value); err != nil {
		return fmt.Errorf("store: put meta %s: %w", name, err)
	}
	return nil
}
