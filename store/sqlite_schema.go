package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// sqliteMigrations are the schema changes in order: applying
// sqliteMigrations[i] takes the database from version i to version i+1.
// Never edit or reorder a released entry; append a new one.
//
// Conventions: tables are STRICT; times are INTEGER unix nanoseconds, NULL
// for "never"; addresses are TEXT, empty for none; login names are TEXT
// compared byte for byte. TOTP, app passwords and failures are keyed by
// login name, not by a users row, because users verified by the upstream
// have none; so there are no foreign keys yet (they are enabled on every
// connection for later migrations).
var sqliteMigrations = []string{
	// 1: the initial schema.
	`
CREATE TABLE users (
	name                     TEXT PRIMARY KEY,
	password_hash            TEXT NOT NULL,
	disabled                 INTEGER NOT NULL DEFAULT 0,
	sealed_upstream_password BLOB,
	created                  INTEGER NOT NULL,
	updated                  INTEGER NOT NULL
) STRICT;

CREATE TABLE totp (
	username      TEXT PRIMARY KEY,
	sealed_secret BLOB NOT NULL,
	confirmed     INTEGER NOT NULL DEFAULT 0,
	created       INTEGER NOT NULL
) STRICT;

-- Used codes, for replay protection; pruned by age of use.
CREATE TABLE totp_used (
	username TEXT NOT NULL,
	step     INTEGER NOT NULL,
	used     INTEGER NOT NULL,
	PRIMARY KEY (username, step)
) STRICT;
CREATE INDEX totp_used_used ON totp_used (used);

CREATE TABLE totp_grace (
	username    TEXT NOT NULL,
	ip          TEXT NOT NULL,
	valid_until INTEGER NOT NULL,
	PRIMARY KEY (username, ip)
) STRICT;
CREATE INDEX totp_grace_valid_until ON totp_grace (valid_until);

-- Revoked rows stay, for the audit trail and for revocation polling by id;
-- AUTOINCREMENT keeps a deleted row's id from coming back as a live one.
CREATE TABLE app_passwords (
	id        INTEGER PRIMARY KEY AUTOINCREMENT,
	username  TEXT NOT NULL,
	name      TEXT NOT NULL,
	hash      BLOB NOT NULL,
	read_only INTEGER NOT NULL DEFAULT 0,
	account   TEXT NOT NULL DEFAULT '',
	created   INTEGER NOT NULL,
	expires   INTEGER,
	last_used INTEGER,
	last_ip   TEXT NOT NULL DEFAULT '',
	revoked   INTEGER
) STRICT;
-- A name is unique among a user's live app passwords; a revoked one's name
-- may be reused.
CREATE UNIQUE INDEX app_passwords_live_name ON app_passwords (username, name) WHERE revoked IS NULL;
CREATE INDEX app_passwords_hash ON app_passwords (username, hash);

-- expires is last_failure plus the window of the call that wrote it, so
-- that pruning is right for every caller whatever its window.
CREATE TABLE failures (
	counter_key   TEXT PRIMARY KEY,
	failure_count INTEGER NOT NULL,
	last_failure  INTEGER NOT NULL,
	expires       INTEGER NOT NULL
) STRICT;
CREATE INDEX failures_expires ON failures (expires);

CREATE TABLE events (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	time     INTEGER NOT NULL,
	username TEXT NOT NULL DEFAULT '',
	kind     TEXT NOT NULL,
	method   TEXT NOT NULL DEFAULT '',
	detail   TEXT NOT NULL DEFAULT '',
	remote   TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE INDEX events_time ON events (time, id);
CREATE INDEX events_username_time ON events (username, time, id);
`,
	// 2: small named values of the proxy's own (the server key check).
	`
CREATE TABLE meta (
	name  TEXT PRIMARY KEY,
	value BLOB NOT NULL
) STRICT;
`,
	// 3: merge mode's virtual mailboxes, their UID maps and kept keywords.
	`
-- The greatest UIDVALIDITY ever given to a virtual mailbox of each user;
-- kept when mailboxes are deleted, so that none is ever given twice.
CREATE TABLE vmailbox_uidvalidity (
	username         TEXT PRIMARY KEY,
	last_uidvalidity INTEGER NOT NULL
) STRICT;

-- AUTOINCREMENT: a deleted mailbox's id never comes back for another.
-- uidnext is at most 2^32-1 (vuids at most 2^32-2).
CREATE TABLE vmailboxes (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	username    TEXT NOT NULL,
	name        TEXT NOT NULL,
	uidvalidity INTEGER NOT NULL,
	uidnext     INTEGER NOT NULL DEFAULT 1,
	created     INTEGER NOT NULL,
	UNIQUE (username, name)
) STRICT;

-- (vmailbox, vuid) <-> (account, upstream mailbox, upstream UIDVALIDITY,
-- upstream UID). Clustered by vuid for snapshots; the unique index finds a
-- source's rows and makes one upstream message map to one vuid.
CREATE TABLE vmessages (
	vmailbox    INTEGER NOT NULL REFERENCES vmailboxes (id) ON DELETE CASCADE,
	vuid        INTEGER NOT NULL,
	account     TEXT NOT NULL,
	mailbox     TEXT NOT NULL,
	uidvalidity INTEGER NOT NULL,
	uid         INTEGER NOT NULL,
	PRIMARY KEY (vmailbox, vuid)
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX vmessages_source ON vmessages (vmailbox, account, mailbox, uidvalidity, uid);

-- Keywords an upstream cannot store, one row each; they go with their
-- message's row.
CREATE TABLE vkeywords (
	vmailbox INTEGER NOT NULL,
	vuid     INTEGER NOT NULL,
	keyword  TEXT NOT NULL,
	PRIMARY KEY (vmailbox, vuid, keyword),
	FOREIGN KEY (vmailbox, vuid) REFERENCES vmessages (vmailbox, vuid) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
`,
	// 4: merge mode's journal of cross-account COPY/MOVE transfers.
	`
-- One row per message being copied or moved between accounts, written
-- before the upstream work starts, so that a crash leaves a trace that
-- recovery finishes or rolls back. dst_uidnext is the target's UIDNEXT
-- before the APPEND: the appended message's UID is not below it.
CREATE TABLE transfers (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	username        TEXT NOT NULL,
	kind            TEXT NOT NULL,
	state           TEXT NOT NULL,
	src_account     TEXT NOT NULL,
	src_mailbox     TEXT NOT NULL,
	src_uidvalidity INTEGER NOT NULL,
	src_uid         INTEGER NOT NULL,
	dst_account     TEXT NOT NULL,
	dst_mailbox     TEXT NOT NULL,
	dst_uidvalidity INTEGER NOT NULL DEFAULT 0,
	dst_uidnext     INTEGER NOT NULL DEFAULT 0,
	dst_uid         INTEGER NOT NULL DEFAULT 0,
	size            INTEGER NOT NULL DEFAULT 0,
	message_id      TEXT NOT NULL DEFAULT '',
	internal_date   INTEGER,
	created         INTEGER NOT NULL,
	updated         INTEGER NOT NULL
) STRICT;
-- Unfinished rows per user, for recovery; finished rows by age, for pruning.
CREATE INDEX transfers_open ON transfers (username, id) WHERE state IN ('started', 'appended');
CREATE INDEX transfers_updated ON transfers (updated) WHERE state NOT IN ('started', 'appended');
`,
}

// migrateSQLite brings the schema of db up to date in one IMMEDIATE
// transaction, so that two processes opening a new file at once apply each
// migration once: the second waits for the first and then finds nothing
// to do. The version is the highest row of schema_version, which also
// records when each migration was applied.
func migrateSQLite(ctx context.Context, db *sql.DB, path string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: %s: migrate: begin: %w", path, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
	version INTEGER PRIMARY KEY,
	applied INTEGER NOT NULL
) STRICT`); err != nil {
		return fmt.Errorf("store: %s: migrate: %w", path, err)
	}
	var version int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_version`).Scan(&version); err != nil {
		return fmt.Errorf("store: %s: migrate: read version: %w", path, err)
	}
	if version > len(sqliteMigrations) {
		return fmt.Errorf("%w: %s has schema version %d, this program knows up to %d",
			ErrNewerSchema, path, version, len(sqliteMigrations))
	}
	for i := version; i < len(sqliteMigrations); i++ {
		if _, err := tx.ExecContext(ctx, sqliteMigrations[i]); err != nil {
			return fmt.Errorf("store: %s: migrate to version %d: %w", path, i+1, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version, applied) VALUES (?, ?)`,
			i+1, time.Now().UnixNano()); err != nil {
			return fmt.Errorf("store: %s: migrate to version %d: %w", path, i+1, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: %s: migrate: commit: %w", path, err)
	}
	return nil
}
