package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the embedded Store: one database file in WAL mode, shared
// safely by a running server and admin verbs in other processes.
//
// It holds two handles on the file. SQLite allows one writer at a time per
// database, across all processes, so writes go through a handle limited to
// one connection: writers in this process queue in database/sql instead of
// spinning in SQLite's busy handler, and the busy timeout is left to cover
// the other processes only. Reads go through a small pool of read-only
// connections, which WAL lets run alongside the writer, so a login's
// lookups never wait behind another login's failure counter update.
// Transactions on the write handle begin IMMEDIATE (they take the write lock
// at BEGIN, waiting under the busy timeout), so a read-then-write
// transaction cannot fail half way with SQLITE_BUSY when another process
// wrote in between.
type SQLite struct {
	write *stmtDB // one connection; every write and every transaction
	read  *stmtDB // read-only pool
}

var _ Store = (*SQLite)(nil)

// sqliteBusyTimeout is how long a statement waits for another process's
// write lock before failing with SQLITE_BUSY. Admin verbs and the server
// hold the lock for milliseconds; the margin is for slow disks.
const sqliteBusyTimeout = 5 * time.Second

// sqliteReadConns bounds the read pool.
const sqliteReadConns = 4

// OpenSQLite opens (creating it when missing) the SQLite database at path
// and brings its schema up to date. It fails with ErrNewerSchema when the
// file was written by a newer imapproxy. Close the result when done.
func OpenSQLite(ctx context.Context, path string) (*SQLite, error) {
	if path == "" {
		return nil, errors.New("store: empty SQLite path")
	}
	common := fmt.Sprintf("file:%s?_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)",
		sqliteURIPath(path), sqliteBusyTimeout.Milliseconds())
	write, err := sql.Open("sqlite", common+
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)
	if err := migrateRetrying(ctx, write, path); err != nil {
		write.Close()
		return nil, err
	}
	// Opened after the migrations so that the file exists and is in WAL
	// mode (a persistent setting) before any reader connects.
	read, err := sql.Open("sqlite", common+"&_query_only=1")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	read.SetMaxOpenConns(sqliteReadConns)
	read.SetMaxIdleConns(sqliteReadConns)
	return &SQLite{write: newStmtDB(write), read: newStmtDB(read)}, nil
}

// migrateRetrying runs the migrations, retrying for up to the busy timeout
// while they fail with SQLITE_BUSY. SQLite waits for locks under the busy
// timeout almost everywhere, but not all through a new file's switch to WAL
// mode: when two processes create the file at once, the loser can get
// SQLITE_BUSY at once (seen in TestSQLiteTwoHandles).
func migrateRetrying(ctx context.Context, db *sql.DB, path string) error {
	deadline := time.Now().Add(sqliteBusyTimeout)
	for {
		err := migrateSQLite(ctx, db, path)
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("store: %s: %w (after %w)", path, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// isBusy reports whether err is SQLite's SQLITE_BUSY, in any variant.
func isBusy(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_BUSY
}

// sqliteURIPath escapes the characters that would end the path part of a
// SQLite "file:" URI or be percent-decoded by it.
func sqliteURIPath(path string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
}

// Close implements Store. It closes both handles; the last connection to
// close checkpoints the WAL into the database file.
func (s *SQLite) Close() error {
	return errors.Join(s.read.Close(), s.write.Close())
}

// inTx runs f in a write transaction, committing when f returns nil.
func (s *SQLite) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: begin: %w", err)
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// execOne runs a write statement that must change exactly one row, and
// returns ErrNotFound when it changed none.
func (s *SQLite) execOne(ctx context.Context, what, query string, args ...any) error {
	res, err := s.write.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Times are stored as INTEGER unix nanoseconds (UTC by definition), which
// round-trip exactly and compare as numbers in SQL; the zero time is NULL.
// That limits times to the years 1678 to 2262, checked by checkTimes.

var (
	minStoredTime = time.Unix(0, math.MinInt64)
	maxStoredTime = time.Unix(0, math.MaxInt64)
)

// checkTimes reports an error for a non-zero time that unix nanoseconds
// cannot hold.
func checkTimes(ts ...time.Time) error {
	for _, t := range ts {
		if !t.IsZero() && (t.Before(minStoredTime) || t.After(maxStoredTime)) {
			return fmt.Errorf("store: time %s out of the storable range", t)
		}
	}
	return nil
}

// nanos converts t for storage: NULL for the zero time.
func nanos(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

// fromNanos converts a stored time back, in UTC.
func fromNanos(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// addrText converts an address for storage: "" for the invalid address.
func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// parseAddr converts a stored address back.
func parseAddr(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("store: stored address %q: %w", s, err)
	}
	return a, nil
}
