package store

import (
	"context"
	"database/sql"
	"sync"
)

// maxCachedStatements bounds stmtDB's cache; queries built with a variable
// number of placeholders would otherwise grow it without end.
const maxCachedStatements = 128

// stmtDB is a database handle that keeps its statements prepared.
// database/sql with modernc.org/sqlite compiles a query anew on every call,
// and on the login path (failure counts, user and TOTP look-ups, the audit
// write) compiling cost more than running.
type stmtDB struct {
	*sql.DB
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
}

func newStmtDB(db *sql.DB) *stmtDB { return &stmtDB{DB: db, stmts: make(map[string]*sql.Stmt)} }

// stmt returns query prepared, or nil when it cannot be cached.
func (d *stmtDB) stmt(ctx context.Context, query string) *sql.Stmt {
	d.mu.Lock()
	defer d.mu.Unlock()
	if st, ok := d.stmts[query]; ok {
		return st
	}
	if len(d.stmts) >= maxCachedStatements {
		return nil
	}
	st, err := d.DB.PrepareContext(context.WithoutCancel(ctx), query)
	if err != nil {
		return nil // the plain call below reports the error
	}
	d.stmts[query] = st
	return st
}

// QueryRowContext is sql.DB's, with a cached statement.
func (d *stmtDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := d.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return d.DB.QueryRowContext(ctx, query, args...)
}

// QueryContext is sql.DB's, with a cached statement.
func (d *stmtDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := d.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return d.DB.QueryContext(ctx, query, args...)
}

// ExecContext is sql.DB's, with a cached statement.
func (d *stmtDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := d.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return d.DB.ExecContext(ctx, query, args...)
}

// Close closes the statements, then the handle.
func (d *stmtDB) Close() error {
	d.mu.Lock()
	for _, st := range d.stmts {
		st.Close()
	}
	d.stmts = nil
	d.mu.Unlock()
	return d.DB.Close()
}
