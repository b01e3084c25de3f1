package merge

// This file holds the Manager, which keeps one hub per merged user for as
// long as the user has sessions (and a linger after the last one), so
// that a user's sessions share upstream connections, watchers and the
// change fan-out.

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"imapproxy/store"
	"imapproxy/upstream"
)

// Manager defaults.
const (
	defaultMaxConnsPerAccount = 4
	defaultLinger             = 30 * time.Second
	defaultWatchLinger        = 30 * time.Second
)

// ErrManagerClosed is returned by Attach after Manager.Close.
var ErrManagerClosed = errors.New("merge: manager closed")

// AccountSpec is one account of a merged user, ready to dial.
type AccountSpec struct {
	// Name is the account's name (config [[user.account]] name).
	Name string
	// Prefix is where the account is mounted; "" for the primary account.
	Prefix string
	// Options say how to reach and log in to the account's upstream.
	Options upstream.AccountOptions
}

// UserSpec is a merged user.
type UserSpec struct {
	// User is the login name; the store keys virtual mailboxes by it.
	User string
	// Accounts are the user's accounts, in configuration order.
	Accounts []AccountSpec
	// UnifiedInbox makes the top-level INBOX the union of every account's.
	UnifiedInbox bool
	// UnifiedSpecialUse lists the special uses ("\Sent", "sent", ...)
	// whose folders are unified into one top-level folder.
	UnifiedSpecialUse []string
	// DefaultAccount receives APPENDs to unified folders that no rule
	// places (used by the session; kept here so that it has it).
	DefaultAccount string
	// AppendRules choose, by the message's From and To, the account that
	// receives a message appended to a unified folder; the first match
	// wins, else DefaultAccount (see append_rule.go).
	AppendRules []AppendRule
}

// ManagerOptions configure a Manager. Zero values mean defaults.
type ManagerOptions struct {
	// Store keeps the virtual mailboxes and their UID maps. Required.
	Store store.Store
	// Logger gets the hubs' logs; nil discards them.
	Logger *slog.Logger
	// MaxConnsPerAccount bounds each account's pool of upstream
	// connections for commands and syncs, and apart from it the
	// watchers' (one per selected source; so at most twice this many
	// per account in all). Zero means 4.
	MaxConnsPerAccount int
	// WatchInterval is the watchers' NOOP polling interval, and the
	// longest IDLE before it is re-issued (capped at 25 minutes). Zero
	// means Watch's default (5s).
	WatchInterval time.Duration
	// Linger is how long a hub outlives its last session, so that a
	// reconnecting client finds its connections and watchers. Zero means
	// 30s.
	Linger time.Duration
	// WatchLinger is how long the watchers of a mailbox no session has
	// selected any more keep running (for the latest two such mailboxes),
	// so that selecting it again needs no upstream command. Zero means
	// 30s.
	WatchLinger time.Duration
}

// Manager keeps the hubs of merged users, one per user, created by the
// first Attach and stopped after the last Detach (plus Linger) or by
// Close.
//
// Its map of hubs is guarded by a mutex rather than owned by a
// goroutine: it is a registry only, touched briefly by Attach and by a
// hub that stops, never held across I/O or while waiting for a hub, and a
// goroutine would add nothing but a hop.
type Manager struct {
	o ManagerOptions

	mu     sync.Mutex
	hubs   map[string]*Hub
	closed bool
}

// NewManager returns a Manager with no hubs.
func NewManager(o ManagerOptions) *Manager {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxConnsPerAccount <= 0 {
		o.MaxConnsPerAccount = defaultMaxConnsPerAccount
	}
	if o.Linger <= 0 {
		o.Linger = defaultLinger
	}
	if o.WatchLinger <= 0 {
		o.WatchLinger = defaultWatchLinger
	}
	return &Manager{o: o, hubs: make(map[string]*Hub)}
}

// Attach returns the user's hub, creating it on first use, and registers
// one client session on it; call Hub.Detach when the session ends. A hub
// that exists keeps the spec it was created with (a changed
// configuration takes effect once the hub has stopped).
func (m *Manager) Attach(ctx context.Context, spec UserSpec) (*Hub, *Subscriber, error) {
	if len(spec.Accounts) == 0 {
		return nil, nil, errors.New("merge: attach: user has no accounts")
	}
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, nil, ErrManagerClosed
		}
		h := m.hubs[spec.User]
		if h == nil {
			h = newHub(m, spec)
			m.hubs[spec.User] = h
		}
		m.mu.Unlock()
		sub, err := h.attach(ctx)
		if errors.Is(err, errHubStopped) {
			continue // it stopped meanwhile, and has left the map
		}
		if err != nil {
			return nil, nil, err
		}
		return h, sub, nil
	}
}

// forget removes h from the map, if it is still there; a stopping hub
// calls it before it stops taking requests, so that Attach makes a new
// one.
func (m *Manager) forget(h *Hub) {
	m.mu.Lock()
	if m.hubs[h.spec.User] == h {
		delete(m.hubs, h.spec.User)
	}
	m.mu.Unlock()
}

// Close stops every hub (their sessions' later calls fail) and waits for
// them. Attach fails afterwards. Close may be called more than once.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	hubs := m.hubs
	m.hubs = make(map[string]*Hub)
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, h := range hubs {
		wg.Go(h.close)
	}
	wg.Wait()
}
