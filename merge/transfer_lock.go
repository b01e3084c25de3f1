package merge

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/emersion/go-imap/v2"
)

// transferLocks make sure that one source message is transferred by one
// engine at a time in this process: two sessions of a user moving the same
// message at once would each append it, and Recover must not judge a
// journal row that a running transfer is still advancing.
//
// The table is process-wide, not per hub or Manager, because what it
// guards is: the journal in a store that every Manager of the process on
// that store shares (a restarted Manager's Recover runs alongside the old
// one's last transfers in tests and during a graceful restart). Entries
// exist only while held.
type transferLocks struct {
	mu   sync.Mutex
	held map[string]chan struct{} // closed on release
}

var liveTransfers = &transferLocks{held: make(map[string]chan struct{})}

// transferKey names one source message of one user.
func transferKey(user, account, mailbox string, uid imap.UID) string {
	return fmt.Sprintf("%q %q %q %d", user, account, mailbox, uid)
}

// lock takes every key, waiting for keys others hold (in sorted order, so
// that two callers cannot wait for each other), until ctx ends. The
// returned func releases them all.
func (l *transferLocks) lock(ctx context.Context, keys []string) (func(), error) {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	keys = slices.Compact(keys)
	var got []string
	release := func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, k := range got {
			close(l.held[k])
			delete(l.held, k)
		}
	}
	for _, k := range keys {
		for {
			l.mu.Lock()
			ch, busy := l.held[k]
			if !busy {
				l.held[k] = make(chan struct{})
				got = append(got, k)
				l.mu.Unlock()
				break
			}
			l.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				release()
				return nil, ctx.Err()
			}
		}
	}
	return release, nil
}

// tryLock takes key if nobody holds it.
func (l *transferLocks) tryLock(key string) (func(), bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, busy := l.held[key]; busy {
		return nil, false
	}
	ch := make(chan struct{})
	l.held[key] = ch
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		close(ch)
		delete(l.held, key)
	}, true
}
