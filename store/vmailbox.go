package store

import (
	"errors"
	"math"
	"time"
)

// Merge mode's virtual mailboxes.
//
// Every virtual mailbox has its own UIDVALIDITY and its own UIDs (vuids).
// The UIDVALIDITY comes from the clock, so that a lost database never gives
// a client an old UIDVALIDITY with new meanings, and is strictly greater
// than any this store ever gave a mailbox of the same user, so that a
// deleted and re-created mailbox, or two created in the same second, never
// share one. Vuids are allocated in increasing order as upstream messages
// are first seen (MapUIDs), in one store transaction per batch, and never
// reused: UIDNEXT only grows, whatever is removed.
//
// Each vuid stands for one upstream message at one upstream UIDVALIDITY,
// a (Source, UID) pair. When an upstream's UIDVALIDITY changes, the caller
// forgets that source's old rows (ForgetSource, whose vuids its sessions
// expunge) and maps the messages again, getting new vuids above the old
// UIDNEXT.
//
// Vuids are uint32 like all IMAP UIDs, and the store never allocates
// MaxVUID+1 (2^32-1) so that UIDNEXT always fits in a uint32. A mailbox that
// runs out fails MapUIDs with ErrUIDsExhausted; the way out is a new
// UIDVALIDITY (delete and re-create the virtual mailbox), which is the
// caller's business.
//
// Names (users, virtual and upstream mailboxes, accounts) are compared byte
// for byte: callers normalize them (INBOX, modified UTF-7) beforehand.

// ErrUIDsExhausted: a virtual mailbox has no vuids left for a MapUIDs call.
var ErrUIDsExhausted = errors.New("store: virtual mailbox has no UIDs left (it needs a new UIDVALIDITY)")

// MaxVUID is the largest vuid the store allocates. IMAP UIDs go up to
// 2^32-1, but then UIDNEXT would not fit in 32 bits.
const MaxVUID = math.MaxUint32 - 1

// VMailbox is one virtual mailbox of a user.
type VMailbox struct {
	ID          int64 // never reused, also after DeleteVMailbox
	User        string
	Name        string
	UIDValidity uint32
	UIDNext     uint32 // the vuid the next newly seen message gets; starts at 1
	Created     time.Time
}

// Source is an upstream mailbox of one account at one UIDVALIDITY.
type Source struct {
	Account     string
	Mailbox     string
	UIDValidity uint32 // MapUIDs refuses 0 (see ForgetSource)
}

// VMessage maps one vuid of a virtual mailbox to its upstream message.
type VMessage struct {
	VUID        uint32
	Account     string
	Mailbox     string
	UIDValidity uint32
	UID         uint32
}
