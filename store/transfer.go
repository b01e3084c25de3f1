package store

import "time"

// Merge mode's transfer journal.
//
// A cross-account COPY or MOVE cannot be one atomic step: the message is
// fetched from one upstream, appended to another, and (for MOVE) deleted
// from the first. Each message's transfer is recorded before the upstream
// work starts and its row is advanced as the steps complete, so that after
// a crash or an upstream failure a recovery step can look at the upstreams
// and finish or roll back what was left half done: a moved message ends in
// exactly one place, a copied one in both.

// TransferKind says whether a transfer copies or moves.
type TransferKind string

// Transfer kinds.
const (
	TransferCopy TransferKind = "copy"
	TransferMove TransferKind = "move"
)

// TransferState is how far a transfer got.
type TransferState string

// Transfer states. Started and Appended are unfinished; Done and
// RolledBack are final.
const (
	// TransferStarted: recorded; the APPEND may or may not have happened.
	TransferStarted TransferState = "started"
	// TransferAppended: the target has the message (DstUID says where,
	// when known); a MOVE's source may still have it.
	TransferAppended TransferState = "appended"
	// TransferDone: finished (a MOVE's source deleted).
	TransferDone TransferState = "done"
	// TransferRolledBack: given up with the message where it was (a MOVE
	// whose APPEND never happened), or nothing left to do.
	TransferRolledBack TransferState = "rolledback"
)

// Finished reports whether s is a final state.
func (s TransferState) Finished() bool { return s == TransferDone || s == TransferRolledBack }

// Transfer is one message's cross-account COPY or MOVE.
type Transfer struct {
	ID    int64 // never reused
	User  string
	Kind  TransferKind
	State TransferState

	// The source message.
	SrcAccount     string
	SrcMailbox     string
	SrcUIDValidity uint32
	SrcUID         uint32

	// The target mailbox and, once known, the message there.
	DstAccount string
	DstMailbox string
	// DstUIDValidity is the target mailbox's UIDVALIDITY when DstUIDNext
	// (and DstUID) were read; 0 when unknown.
	DstUIDValidity uint32
	// DstUIDNext is the target's UIDNEXT before the APPEND: the appended
	// message's UID is at least this (0: unknown).
	DstUIDNext uint32
	// DstUID is the appended message's UID (APPENDUID or found by
	// search); 0 until known.
	DstUID uint32

	// What identifies the message when the target gives no APPENDUID.
	Size         int64
	MessageID    string // without angle brackets; "" when it has none
	InternalDate time.Time

	Created time.Time
	Updated time.Time // set by the store on every change
}
