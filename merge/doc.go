// Package merge serves several upstream accounts as one IMAP account: the
// merged-account session (go-imap's imapserver.Session), virtual
// mailboxes, UID and flag translation, and change watching.
//
// How merge mode fits together (the plan the code follows; see also the
// project's DESIGN.md, section Merge mode).
//
// A merged user has several accounts (config [[user.account]]), each on an
// upstream. The front door authenticates the client and hands the
// connection to go-imap's imapserver (proxy.Handoff), whose NewSession
// makes one Session of this package per client connection.
//
// Per user there is one hub, shared by that user's sessions and owned by a
// Manager (one per server). The hub owns:
//
//   - one upstream.AccountPool per account (logged-in imapclient
//     connections with a watchdog, reconnect and backoff), bounded, so
//     that upstream connections do not grow with client sessions;
//   - the folder tree (router.Tree), built once each account's delimiter
//     and personal namespace are known;
//   - per virtual mailbox: its store.VMailbox (UIDVALIDITY, UIDNEXT) and
//     the sessions that have it selected, for change fan-out;
//   - the watchers: one per selected source (account, upstream mailbox),
//     not per session, using IDLE where the upstream has it, else NOOP
//     polling, feeding changes (new UIDs, expunged UIDs, flag changes) to
//     the hub.
//
// A session selects a virtual mailbox by syncing each source: list the
// upstream's UIDs and flags (UID FETCH 1:* (FLAGS)), map unseen UIDs to
// virtual UIDs in one store transaction (store.MapUIDs; a changed upstream
// UIDVALIDITY first drops that source's rows, store.ForgetSource), and
// build its own Snapshot from store.VMessages. Commands resolve their
// number sets against the Snapshot, group the virtual UIDs by source and
// run the upstream commands on pooled connections (selecting the source
// mailbox first; a pooled connection may have another one selected).
// Bodies are streamed from the upstream to the client (upstream.FetchRaw
// fetches by sequence number and checks the UID), never held whole.
//
// Changes reach sessions as queued updates that Poll and Idle deliver:
// EXISTS for new virtual UIDs, EXPUNGE for removed ones (Snapshot.Expunge
// gives the order), FETCH FLAGS for flag changes. A session never sees a
// virtual UID reused.
//
// Flags are upstream-authoritative; keywords an upstream cannot keep (its
// PERMANENTFLAGS lacks \*) are kept in the store (store.SetKeywords), so
// PERMANENTFLAGS includes \* where the proxy keeps them. Mailbox FLAGS are
// the union of the sources' flags and the kept keywords.
package merge
