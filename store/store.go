// Package store is imapproxy's persistent state behind one interface:
// users kept by the admin verbs, TOTP enrolments and used codes, app
// passwords, login failure counters and audit events. SQLite (embedded, the
// default) implements it; a PostgreSQL implementation for several proxy
// instances can follow without touching callers.
//
// The store holds secrets only in the form callers give them: password
// hashes, and TOTP secrets and upstream passwords already encrypted by the
// caller (auth.Sealer). It never sees a key.
package store

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// Errors callers can test with errors.Is.
var (
	// ErrNotFound: no such user, enrolment or app password.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: the user, or a live app password of that name, exists.
	ErrExists = errors.New("store: already exists")
	// ErrNewerSchema: the state was written by a newer imapproxy, whose
	// schema this one does not know; opening it fails rather than risk it.
	ErrNewerSchema = errors.New("store: schema is newer than this program")
)

// User is a user kept in the store (in addition to config [[user]]s).
type User struct {
	Name         string
	PasswordHash string // argon2id PHC string or bcrypt
	Disabled     bool
	// SealedUpstreamPassword is the user's upstream password encrypted by
	// auth.Sealer; nil when none is stored.
	SealedUpstreamPassword []byte
	Created                time.Time
	Updated                time.Time
}

// TOTP is a user's TOTP enrolment. The secret is encrypted by the caller.
type TOTP struct {
	User         string
	SealedSecret []byte
	Confirmed    bool // false until the user has entered a first code
	Created      time.Time
}

// AppPassword is one named app password. Only a hash of the password is
// kept (app passwords are random with high entropy, so a fast hash is
// enough).
type AppPassword struct {
	ID       int64
	User     string
	Name     string
	Hash     []byte // SHA-256 of the password
	ReadOnly bool
	Account  string // restricts it to one account (merge mode); "" = all
	Created  time.Time
	Expires  time.Time // zero: never
	LastUsed time.Time // zero: never
	LastIP   netip.Addr
	Revoked  time.Time // zero: not revoked
}

// Event is one audit record.
type Event struct {
	ID     int64
	Time   time.Time
	User   string
	Kind   string // login, login_failed, totp_enrolled, totp_removed, app_password_added, app_password_revoked, user_added, ...
	Method string // password, password+totp, password+grace, app_password, oauth, upstream ...
	Detail string // e.g. the app password's name, the failure reason; never a secret
	Remote netip.Addr
}

// Store is the persistent state. Implementations are safe for concurrent
// use, including by several processes on the same state (a running server
// and the admin verbs).
//
// Conventions for every method: times round-trip exactly (compare with
// time.Time.Equal; they come back in UTC) and must lie within the years
// 1678 to 2262, the zero time meaning "never" or "none"; where a record's
// creation time (or an event's time) is zero the store sets it to now.
// Methods that change one named record return ErrNotFound when it does not
// exist. The invalid netip.Addr round-trips as itself.
type Store interface {
	// Users. The Set methods also set Updated to now. DeleteUser also
	// removes the user's TOTP enrolment and app passwords (whose ids
	// RevokedAppPasswords then reports), but keeps events and failure
	// counters.
	AddUser(ctx context.Context, u User) error // ErrExists
	GetUser(ctx context.Context, name string) (User, error)
	ListUsers(ctx context.Context) ([]User, error) // by name
	// CredentialUsers returns, by name, the login names that have a TOTP
	// enrolment or an app password, with or without a user row (users
	// the upstream verifies have none).
	CredentialUsers(ctx context.Context) ([]string, error)
	SetPasswordHash(ctx context.Context, name, hash string) error
	SetDisabled(ctx context.Context, name string, disabled bool) error
	SetSealedUpstreamPassword(ctx context.Context, name string, sealed []byte) error // nil clears
	DeleteUser(ctx context.Context, name string) error

	// TOTP. Enrolments are keyed by login name, so users verified by the
	// upstream (not in the store's user table) can enrol too. PutTOTP and
	// DeleteTOTP end the user's grace windows.
	PutTOTP(ctx context.Context, t TOTP) error // replaces
	GetTOTP(ctx context.Context, user string) (TOTP, error)
	ConfirmTOTP(ctx context.Context, user string) error
	DeleteTOTP(ctx context.Context, user string) error
	// UseTOTPStep records that the code of time step step was used by user;
	// it returns false when it was already used (a replay), atomically
	// across processes. Steps used more than keep ago (by the store's
	// clock) are forgotten, so keep must cover the steps still accepted.
	UseTOTPStep(ctx context.Context, user string, step int64, keep time.Duration) (bool, error)
	// Grace: after a login with a code from ip, until marks when the same
	// user may log in from the same ip without a new code. A zero until
	// removes it. TOTPGraceUntil returns the stored time even when it has
	// passed (the caller's clock decides); ended windows are pruned some
	// time later.
	PutTOTPGrace(ctx context.Context, user string, ip netip.Addr, until time.Time) error
	TOTPGraceUntil(ctx context.Context, user string, ip netip.Addr) (time.Time, error) // zero time when none

	// App passwords. Ids are never reused. A name is unique among a user's
	// live (not revoked) app passwords: once revoked, its name may be
	// used again, and the revoked row stays, listed, for audit.
	// FindAppPassword never returns a revoked one but does return an
	// expired one (check Expires). RevokeAppPassword revokes the live one
	// of that name.
	AddAppPassword(ctx context.Context, ap AppPassword) (int64, error)        // ErrExists for a (user, name) in use; ap.ID is ignored
	ListAppPasswords(ctx context.Context, user string) ([]AppPassword, error) // revoked included, oldest first
	FindAppPassword(ctx context.Context, user string, hash []byte) (AppPassword, error)
	TouchAppPassword(ctx context.Context, id int64, when time.Time, ip netip.Addr) error
	RevokeAppPassword(ctx context.Context, user, name string, when time.Time) error
	// RevokedAppPasswords returns those of ids that are revoked (or
	// deleted); the server polls it to end live sessions.
	RevokedAppPasswords(ctx context.Context, ids []int64) ([]int64, error)

	// Failure counters (auth.FailureCounter, with errors): counts of
	// failures within window. AddFailure restarts the count at 1 when the
	// key's last failure is window or more before now, else increments it
	// (saturating at 65536), and returns the new count; CountFailures
	// returns 0 for such an expired key. Resetting an unknown key is not
	// an error.
	AddFailure(ctx context.Context, key string, now time.Time, window time.Duration) (int, error)
	CountFailures(ctx context.Context, key string, now time.Time, window time.Duration) (int, error)
	// CountFailuresMany is CountFailures for several keys in one query; the
	// counts come in the order of keys.
	CountFailuresMany(ctx context.Context, keys []string, now time.Time, window time.Duration) ([]int, error)
	ResetFailures(ctx context.Context, key string) error

	// Audit. Events returns the newest first (by Time, then by order of
	// addition); user "" means all users; limit <= 0 means no limit.
	AddEvent(ctx context.Context, e Event) error // e.ID is ignored
	Events(ctx context.Context, user string, limit int) ([]Event, error)

	// Virtual mailboxes of merge mode (see VMailbox for the rules). The
	// methods taking a vmailboxID return ErrNotFound when there is no such
	// virtual mailbox (it may have been deleted meanwhile).
	//
	// VMailbox returns the user's virtual mailbox name, creating it when
	// missing with a new UIDVALIDITY: the clock's seconds since 1970 (as
	// a uint32, never 0), or one more than the greatest UIDVALIDITY this
	// store ever gave a mailbox of this user when that is not below.
	VMailbox(ctx context.Context, user, name string) (VMailbox, error)
	ListVMailboxes(ctx context.Context, user string) ([]VMailbox, error) // by name
	// RenameVMailbox renames one virtual mailbox, keeping its id,
	// UIDVALIDITY and vuids (IMAP RENAME; renaming INBOX, which empties
	// it instead, and the mailbox's children are the caller's business).
	// ErrNotFound when from is missing, else ErrExists when to exists.
	RenameVMailbox(ctx context.Context, user, from, to string) error
	// DeleteVMailbox removes a virtual mailbox with its messages' rows and
	// keywords; a later one of the same name gets a greater UIDVALIDITY.
	DeleteVMailbox(ctx context.Context, user, name string) error
	// MapUIDs returns the vuids of upstream messages uids of src, in the
	// order of uids, allocating them for messages not seen before: from
	// UIDNEXT upwards, in increasing order of upstream UID, all in one
	// transaction (also across processes: a message never gets two
	// vuids). Rows of src's mailbox at another UIDVALIDITY are left alone.
	// A uid of 0 or a src.UIDValidity of 0 is an error; ErrUIDsExhausted
	// when the new vuids would pass MaxVUID (then nothing is allocated).
	MapUIDs(ctx context.Context, vmailboxID int64, src Source, uids []uint32) ([]uint32, error)
	// VMessages returns all rows of a virtual mailbox, by vuid.
	VMessages(ctx context.Context, vmailboxID int64) ([]VMessage, error)
	// SourceMessages returns the rows of one upstream mailbox (at any
	// UIDVALIDITY) in a virtual mailbox, by vuid.
	SourceMessages(ctx context.Context, vmailboxID int64, account, mailbox string) ([]VMessage, error)
	// ForgetSource removes the rows of account's mailbox whose UIDVALIDITY
	// is not keep (the upstream's UIDVALIDITY changed), with their
	// keywords, and returns their vuids in increasing order, for the
	// sessions' EXPUNGEs. keep = 0 removes all of them (the upstream
	// mailbox is gone). UIDNEXT stays: re-mapped messages get new vuids.
	ForgetSource(ctx context.Context, vmailboxID int64, account, mailbox string, keep uint32) ([]uint32, error)
	// RemoveVUIDs removes rows, with their keywords (messages expunged
	// upstream); unknown vuids are ignored.
	RemoveVUIDs(ctx context.Context, vmailboxID int64, vuids []uint32) error
	// SetKeywords replaces the keywords kept for one message (those its
	// upstream cannot store); none removes them. Keywords are kept byte
	// for byte, deduplicated, and come back sorted. ErrNotFound for an
	// unknown vuid.
	SetKeywords(ctx context.Context, vmailboxID int64, vuid uint32, keywords []string) error
	// Keywords returns the kept keywords of those of vuids that have any.
	Keywords(ctx context.Context, vmailboxID int64, vuids []uint32) (map[uint32][]string, error)
	// MailboxKeywords returns the kept keywords of every message of the
	// virtual mailbox that has any (one query, whatever its size).
	MailboxKeywords(ctx context.Context, vmailboxID int64) (map[uint32][]string, error)

	// Transfer journal of merge mode (see Transfer). AddTransfer records a
	// transfer (t.ID and t.Updated are ignored) and returns its id;
	// UpdateTransfer writes t's State and Dst* fields to the row of t.ID
	// (ErrNotFound when there is none); SetTransferStates sets the state of
	// several rows at once (unknown ids are ignored). ListTransfers returns
	// a user's rows by id, only the unfinished ones when unfinished is set.
	// PruneTransfers removes the finished rows last updated before before,
	// and returns how many.
	AddTransfer(ctx context.Context, t Transfer) (int64, error)
	UpdateTransfer(ctx context.Context, t Transfer) error
	SetTransferStates(ctx context.Context, ids []int64, state TransferState) error
	ListTransfers(ctx context.Context, user string, unfinished bool) ([]Transfer, error)
	PruneTransfers(ctx context.Context, before time.Time) (int, error)

	// Close releases the store; it must be called once, when done.
	// Meta values: small named values of the proxy's own, such as the
	// sealed check value that tells a wrong server key at start-up.
	GetMeta(ctx context.Context, name string) ([]byte, error) // ErrNotFound
	PutMeta(ctx context.Context, name string, value []byte) error

	Close() error
}
