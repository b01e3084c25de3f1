package merge

// This file holds the hub's API: one hub per merged user, shared by the
// user's sessions. Upstream I/O for a caller (the tree's namespaces, LIST)
// runs on the caller's goroutine with the account pools; everything shared
// (sessions, selected mailboxes, sync states, watchers) belongs to the
// hub's goroutine (hub_state.go), reached through typed events.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-imap/v2"

	"imapproxy/router"
	"imapproxy/store"
	"imapproxy/upstream"
)

// Hub errors.
var (
	// ErrHubClosed: the hub stopped (Manager.Close); the session should
	// end.
	ErrHubClosed = errors.New("merge: hub closed")
	// ErrNotSelectable: the name is a container (an account's prefix) or
	// an upstream \NoSelect folder.
	ErrNotSelectable = errors.New("merge: mailbox cannot be selected")
	// ErrUnavailable: no source of the mailbox could be synced (its
	// upstreams are down); answer NO [UNAVAILABLE].
	ErrUnavailable = errors.New("merge: mailbox unavailable")
)

// errHubStopped makes Attach retry with a new hub.
var errHubStopped = errors.New("merge: hub stopped")

// Folder is one virtual folder as LIST shows it.
type Folder struct {
	// Name is the virtual name ("/"-delimited, UTF-8).
	Name string
	// Attrs are the LIST attributes.
	Attrs []imap.MailboxAttr
	// Unified marks the unified INBOX and unified special-use folders.
	Unified bool
	// Use is the special use of a unified special-use folder.
	Use string
	// Account is the account of an account folder or container.
	Account string
	// NoSelect marks containers and upstream \NoSelect folders.
	NoSelect bool
	// Subscribed: the account's upstream has the folder subscribed, or
	// cannot say (no LIST-EXTENDED), or it is a unified folder or a
	// container (always subscribed).
	Subscribed bool
}

// MailboxView is what a session needs after SELECT. Its Messages (and
// their Flags) are shared with the hub and the user's other sessions:
// never change them.
type MailboxView struct {
	// VMailbox is the virtual mailbox (UIDVALIDITY, UIDNEXT as of the
	// select).
	VMailbox store.VMailbox
	// Messages are the messages, by ascending VUID.
	Messages []ViewMessage
	// Flags is the mailbox's FLAGS: the system flags, the sources'
	// keywords (those in use and those in PERMANENTFLAGS).
	Flags []imap.Flag
	// PermanentFlags are the flags every source can keep (\* when every
	// source accepts new keywords).
	PermanentFlags []imap.Flag
	// Missing are the accounts whose sources could not be synced: their
	// messages are left out until they are back (they reappear, with the
	// same UIDs, at the next SELECT).
	Missing []string
}

// ViewMessage is one message of a virtual mailbox and where it lives. Its
// Flags are shared with the hub and other sessions: never change them.
type ViewMessage struct {
	VUID        uint32
	Account     string
	Mailbox     string
	UIDValidity uint32 // the upstream mailbox's, when UID was read
	UID         imap.UID
	Flags       []imap.Flag
}

// Update is a change of a selected mailbox for a session. Apply Removed
// (EXPUNGE), then Added (EXISTS), then Flags (FETCH FLAGS). Removed and
// Flags may name vuids the session does not have (ignore them); Added
// vuids are always above the ones the session has been given.
type Update struct {
	Mailbox string
	Added   []ViewMessage
	Removed []uint32
	Flags   []ViewMessage
}

// Hub is the shared state of one merged user. Its methods may be called
// from any goroutine.
type Hub struct {
	m     *Manager
	spec  UserSpec
	log   *slog.Logger
	st    store.Store
	pools map[string]*upstream.AccountPool // by account name, for commands and syncs; fixed
	// watchPools hold the watchers' connections, apart from pools: a
	// watcher keeps its connection while it runs, and many selected
	// mailboxes of one account must not starve the syncs and commands
	// (a watcher beyond the bound waits for a free connection instead).
	watchPools map[string]*upstream.AccountPool

	events   chan hubEvent // to the hub goroutine
	dirty    chan struct{} // cap 1: a watcher saw a change
	dirtyMu  sync.Mutex    // guards dirtySet: watchers must never wait for the hub
	dirtySet map[srcKey]bool
	closeReq chan struct{} // closed by close
	closing  sync.Once
	quit     chan struct{} // closed when the hub goroutine stops taking events
	done     chan struct{} // closed when everything has stopped

	ctx    context.Context // ends when the hub stops; sync workers and watchers run under it
	cancel context.CancelFunc
	wg     sync.WaitGroup // sync workers and watcher stops

	listMu   sync.Mutex
	lastList map[string]accountList // each account's last LIST answer

	watchStarts atomic.Int64 // watchers started, for tests
	syncStarts  atomic.Int64 // syncs started, for tests
}

// newHub creates the hub of spec and starts its goroutine. It dials
// nothing yet.
func newHub(m *Manager, spec UserSpec) *Hub {
	h := &Hub{
		m:          m,
		spec:       spec,
		log:        m.o.Logger.With("user", spec.User),
		st:         m.o.Store,
		pools:      make(map[string]*upstream.AccountPool),
		watchPools: make(map[string]*upstream.AccountPool),
		events:     make(chan hubEvent),
		dirty:      make(chan struct{}, 1),
		dirtySet:   make(map[srcKey]bool),
		lastList:   make(map[string]accountList),
		closeReq:   make(chan struct{}),
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	for _, a := range spec.Accounts {
		o := a.Options
		if o.Name == "" {
			o.Name = a.Name
		}
		h.pools[a.Name] = upstream.NewAccountPool(o, m.o.MaxConnsPerAccount)
		h.watchPools[a.Name] = upstream.NewAccountPool(o, m.o.MaxConnsPerAccount)
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	go h.run()
	h.wg.Go(h.recoverTransfers)
	return h
}

// send hands ev to the hub goroutine. It fails once the hub has stopped
// taking events, or when ctx ends first.
func (h *Hub) send(ctx context.Context, ev hubEvent) error {
	select {
	case h.events <- ev:
		return nil
	case <-h.quit:
		return errHubStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

// call sends ev and waits for its reply, which the hub goroutine always
// gives once it has taken ev.
func call[T any](ctx context.Context, h *Hub, ev hubEvent, reply chan T) (T, error) {
	if err := h.send(ctx, ev); err != nil {
		var zero T
		if errors.Is(err, errHubStopped) {
			err = ErrHubClosed
		}
		return zero, err
	}
	return <-reply, nil
}

// attach registers a new session.
func (h *Hub) attach(ctx context.Context) (*Subscriber, error) {
	sub := newSubscriber(h)
	if err := h.send(ctx, attachEvent{sub}); err != nil {
		return nil, err
	}
	return sub, nil
}

// Detach ends a session's use of the hub (its selection included). The
// hub stops after the linger when no session is left. Detach of a
// detached session, or after the hub stopped, does nothing.
func (h *Hub) Detach(sub *Subscriber) {
	h.send(context.Background(), detachEvent{sub})
}

// Unselect ends the session's selection: it gets no more updates.
func (h *Hub) Unselect(sub *Subscriber) {
	h.send(context.Background(), unselectEvent{sub: sub})
}

// Select syncs every source of virtual mailbox virtual, registers sub as
// having it selected (its updates start from the returned view; pending
// updates of an earlier selection are dropped) and returns the view.
// Watchers (one per source for the user, shared) start with the syncs;
// Watch has no ready signal, so a change that lands between a first
// sync and its watcher's first EXAMINE shows with the next change. A
// source that cannot be synced is left out (its messages are missing,
// logged, and it is retried with backoff; they then come as updates)
// unless none can: then the error is the upstream's NO (*imap.Error, a
// missing mailbox) or else wraps ErrUnavailable. Errors from the tree
// (*router.TreeError) are the client's.
func (h *Hub) Select(ctx context.Context, sub *Subscriber, virtual string) (*MailboxView, error) {
	tree, accounts, err := h.tree(ctx)
	if err != nil {
		return nil, err
	}
	name, target, err := h.resolve(ctx, tree, accounts, virtual)
	if err != nil {
		return nil, err
	}
	vm, err := h.st.VMailbox(ctx, h.spec.User, name)
	if err != nil {
		return nil, fmt.Errorf("merge: select %s: %w", name, err)
	}
	reply := make(chan []chan error, 1)
	waits, err := call(ctx, h, selectEvent{sub: sub, name: name, vm: vm, sources: target.Sources, reply: reply}, reply)
	if err != nil {
		return nil, err
	}
	synced := 0
	var lastErr error
	var missing []string
	for i, w := range waits {
		select {
		case err = <-w:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err == nil {
			synced++
			continue
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
		src := target.Sources[i]
		h.log.Warn("select: source left out", "mailbox", name, "account", src.Account, "upstream_mailbox", src.Mailbox, "err", err)
		missing = append(missing, src.Account)
	}
	if synced == 0 && len(waits) > 0 || ctx.Err() != nil {
		h.Unselect(sub)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if _, ok := errors.AsType[*imap.Error](lastErr); ok {
			return nil, fmt.Errorf("merge: select %s: %w", name, lastErr)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrUnavailable, name, lastErr)
	}
	vreply := make(chan *MailboxView, 1)
	view, err := call(ctx, h, activateEvent{sub: sub, name: name, reply: vreply}, vreply)
	if err != nil {
		return nil, err
	}
	if view == nil {
		return nil, fmt.Errorf("merge: select %s: superseded by another selection", name)
	}
	view.Missing = missing
	return view, nil
}

// resolve maps virtual to the store name of its virtual mailbox and its
// target with sources (a unified special-use folder's from the accounts'
// LIST).
func (h *Hub) resolve(ctx context.Context, tree *router.Tree, accounts []string, virtual string) (string, router.Target, error) {
	t, err := tree.Resolve(virtual)
	if err != nil {
		return "", t, err
	}
	switch {
	case t.NoSelect:
		return "", t, fmt.Errorf("%w: %s", ErrNotSelectable, virtual)
	case t.Unified && t.Use != "":
		lists := h.listAccounts(ctx, accounts)
		byAccount := make(map[string]map[string]string)
		for _, al := range lists {
			for _, ld := range al.list {
				for _, a := range ld.Attrs {
					if use, ok := specialUse(a); ok {
						if byAccount[al.account] == nil {
							byAccount[al.account] = make(map[string]string)
						}
						byAccount[al.account][use] = ld.Mailbox
					}
				}
			}
		}
		t.Sources = tree.UnifiedSources(t.Use, byAccount)
		return unifiedName(t.Use), t, nil
	case isInboxName(virtual):
		return "INBOX", t, nil
	}
	if name, ok := tree.VirtualName(t.Sources[0].Account, t.Sources[0].Mailbox); ok {
		return name, t, nil
	}
	return virtual, t, nil
}

// close stops the hub and waits for it.
func (h *Hub) close() {
	h.closing.Do(func() { close(h.closeReq) })
	<-h.done
}

// recoverLog logs a panic of a hub goroutine with its stack and re-panics:
// a broken invariant must not pass silently.
func (h *Hub) recoverLog(what string) {
	if r := recover(); r != nil {
		h.log.Error("merge: panic", "goroutine", what, "panic", r, "stack", string(debug.Stack()))
		panic(r)
	}
}
