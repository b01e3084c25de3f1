package store

import (
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestSQLitePragmas(t *testing.T) {
	s := openTestSQLite(t, filepath.Join(t.TempDir(), "state.db"))
	ctx := t.Context()
	for _, db := range []struct {
		name string
		db   *sql.DB
	}{{"write", s.write.DB}, {"read", s.read.DB}} {
		var mode string
		var fk, busy int
		must(t, db.db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode))
		must(t, db.db.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk))
		must(t, db.db.QueryRowContext(ctx, `PRAGMA busy_timeout`).Scan(&busy))
		if mode != "wal" || fk != 1 || busy != 5000 {
			t.Errorf("%s handle: journal_mode %s, foreign_keys %d, busy_timeout %d", db.name, mode, fk, busy)
		}
	}
	var sync int
	must(t, s.write.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync))
	if sync != 1 { // NORMAL
		t.Errorf("synchronous = %d, want 1 (NORMAL)", sync)
	}
	if _, err := s.read.ExecContext(ctx, `DELETE FROM events`); err == nil {
		t.Error("the read handle can write")
	}
}

// schemaVersion reads the version recorded in the file at path.
func schemaVersion(t *testing.T, s *SQLite) (version, rows int) {
	t.Helper()
	must(t, s.read.QueryRowContext(t.Context(), `SELECT MAX(version), COUNT(*) FROM schema_version`).Scan(&version, &rows))
	return version, rows
}

func TestSQLiteMigrationsIdempotent(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenSQLite(ctx, path)
	must(t, err)
	must(t, s.AddUser(ctx, User{Name: "ann", PasswordHash: "h"}))
	must(t, s.Close())

	s = openTestSQLite(t, path)
	if v, n := schemaVersion(t, s); v != len(sqliteMigrations) || n != len(sqliteMigrations) {
		t.Errorf("after reopening: version %d in %d rows, want %d", v, n, len(sqliteMigrations))
	}
	if _, err := s.GetUser(ctx, "ann"); err != nil {
		t.Errorf("user lost on reopening: %v", err)
	}
}

func TestSQLiteNewerSchemaRefused(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := OpenSQLite(ctx, path)
	must(t, err)
	_, err = s.write.ExecContext(ctx, `INSERT INTO schema_version (version, applied) VALUES (?, 0)`, len(sqliteMigrations)+1)
	must(t, err)
	must(t, s.Close())

	s, err = OpenSQLite(ctx, path)
	if !errors.Is(err, ErrNewerSchema) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("OpenSQLite of a newer schema: %v, want ErrNewerSchema", err)
	}
	t.Log(err)
}

func TestSQLiteOddPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a dir?x=1#frag%20", "state?.db")
	if _, err := OpenSQLite(t.Context(), path); err == nil {
		t.Fatal("OpenSQLite in a missing directory succeeded")
	}
	dir := filepath.Join(t.TempDir(), "a dir?x=1#frag%20")
	path = filepath.Join(dir, "state?.db")
	must(t, os.MkdirAll(dir, 0o700))
	s := openTestSQLite(t, path)
	must(t, s.AddUser(t.Context(), User{Name: "ann", PasswordHash: "h"}))
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at %q: %v", path, err)
	}
}

func TestSQLiteTimeOutOfRange(t *testing.T) {
	s := openTestSQLite(t, filepath.Join(t.TempDir(), "state.db"))
	ctx := t.Context()
	far := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.AddAppPassword(ctx, AppPassword{User: "ann", Name: "x", Hash: []byte{1}, Expires: far}); err == nil {
		t.Error("AddAppPassword with an expiry in 9999 succeeded")
	}
	if err := s.AddEvent(ctx, Event{Time: far, Kind: "x"}); err == nil {
		t.Error("AddEvent in 9999 succeeded")
	}
	// A window reaching past 2262 is clamped, not an error.
	if n, err := s.AddFailure(ctx, "k", base, 1<<62); err != nil || n != 1 {
		t.Errorf("AddFailure with a huge window = %d, %v", n, err)
	}
}

// TestSQLiteTwoHandles stands for a running server and an admin verb in
// another process: two *SQLite on one file, writing at once. The busy
// timeout must keep every call from failing with SQLITE_BUSY.
func TestSQLiteTwoHandles(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "state.db")
	// Several open a new file at once: the migrations must run once, and
	// none may fail while another switches the new file to WAL mode.
	handles := make([]*SQLite, 4)
	errs := make([]error, len(handles))
	var wg sync.WaitGroup
	for i := range handles {
		wg.Go(func() { handles[i], errs[i] = OpenSQLite(ctx, path) })
	}
	wg.Wait()
	for i, s := range handles {
		if s != nil {
			t.Cleanup(func() { must(t, s.Close()) })
		}
		if errs[i] != nil {
			t.Errorf("concurrent open %d: %v", i, errs[i])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	server, admin := handles[0], handles[1]
	if v, n := schemaVersion(t, admin); v != len(sqliteMigrations) || n != len(sqliteMigrations) {
		t.Fatalf("version %d in %d rows after concurrent opens", v, n)
	}

	const rounds = 200
	errc := make(chan error, 4)
	wg.Go(func() {
		for i := range rounds {
			n, err := server.AddFailure(ctx, "ip:192.0.2.1", base.Add(time.Duration(i)*time.Millisecond), time.Hour)
			if err != nil {
				errc <- fmt.Errorf("AddFailure: %w", err)
				return
			}
			if n != i+1 {
				errc <- fmt.Errorf("AddFailure %d = %d", i, n)
				return
			}
		}
	})
	wg.Go(func() {
		for i := range rounds {
			if err := admin.AddEvent(ctx, Event{User: "ann", Kind: "user_added", Detail: fmt.Sprint(i)}); err != nil {
				errc <- fmt.Errorf("AddEvent: %w", err)
				return
			}
		}
	})
	wg.Go(func() {
		for i := range rounds / 4 {
			if _, err := admin.AddAppPassword(ctx, AppPassword{User: "ann", Name: fmt.Sprint(i), Hash: []byte{byte(i)}}); err != nil {
				errc <- fmt.Errorf("AddAppPassword: %w", err)
				return
			}
			if ok, err := server.UseTOTPStep(ctx, "ann", int64(i), time.Hour); err != nil || !ok {
				errc <- fmt.Errorf("UseTOTPStep = %v, %w", ok, err)
				return
			}
		}
	})
	wg.Go(func() {
		for range rounds {
			if _, err := server.Events(ctx, "ann", 10); err != nil {
				errc <- fmt.Errorf("Events: %w", err)
				return
			}
			if _, err := admin.CountFailures(ctx, "ip:192.0.2.1", base, time.Hour); err != nil {
				errc <- fmt.Errorf("CountFailures: %w", err)
				return
			}
		}
	})
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	// Each sees the other's writes.
	if n, err := admin.CountFailures(ctx, "ip:192.0.2.1", base.Add(time.Second), time.Hour); err != nil || n != rounds {
		t.Errorf("admin counts %d failures (%v), want %d", n, err, rounds)
	}
	if events, err := server.Events(ctx, "ann", 0); err != nil || len(events) != rounds {
		t.Errorf("server sees %d events (%v), want %d", len(events), err, rounds)
	}
	// A replay through the other handle is caught.
	if ok, err := admin.UseTOTPStep(ctx, "ann", 0, time.Hour); err != nil || ok {
		t.Errorf("replay through the other handle: %v, %v", ok, err)
	}
	must(t, admin.PutTOTPGrace(ctx, "ann", netip.MustParseAddr("192.0.2.9"), base))
	if g, err := server.TOTPGraceUntil(ctx, "ann", netip.MustParseAddr("192.0.2.9")); err != nil || !g.Equal(base) {
		t.Errorf("grace through the other handle = %v, %v", g, err)
	}
}
