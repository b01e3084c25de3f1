package auth

import (
	"container/list"
	"sync"
	"time"
)

// FailureCounter counts recent failed logins per key. Throttle keeps its
// counts behind this interface so that a shared, persistent store can
// replace the in-memory one. Implementations must be safe for concurrent
// use and forget a key after a window with no failures.
type FailureCounter interface {
	// Count returns the failures recorded for key that have not expired
	// at now.
	Count(key string, now time.Time) int
	// Add records one failure for key at now and returns the new count.
	Add(key string, now time.Time) int
	// Reset forgets key.
	Reset(key string)
}

// memoryCounter is the in-memory FailureCounter: a map plus a list of
// entries ordered by last failure, oldest first, for expiry and eviction.
type memoryCounter struct {
	window     time.Duration
	maxEntries int

	mu      sync.Mutex
	entries map[string]*list.Element // of *counterEntry
	order   list.List                // oldest last failure at the front
}

type counterEntry struct {
	key   string
	count int
	last  time.Time
}

// maxCount saturates a counter; the delay is long capped by then.
const maxCount = 1 << 16

func newMemoryCounter(window time.Duration, maxEntries int) *memoryCounter {
	return &memoryCounter{window: window, maxEntries: maxEntries, entries: make(map[string]*list.Element)}
}

// Count implements FailureCounter.
func (c *memoryCounter) Count(key string, now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	if el, ok := c.entries[key]; ok && c.live(el.Value.(*counterEntry), now) {
		return el.Value.(*counterEntry).count
	}
	return 0
}

// Add implements FailureCounter.
func (c *memoryCounter) Add(key string, now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*counterEntry)
		if !c.live(e, now) {
			e.count = 0
		}
		if e.count < maxCount {
			e.count++
		}
		if now.After(e.last) {
			e.last = now
		}
		c.order.MoveToBack(el)
		return e.count
	}
	for len(c.entries) >= c.maxEntries {
		c.remove(c.order.Front())
	}
	c.entries[key] = c.order.PushBack(&counterEntry{key: key, count: 1, last: now})
	return 1
}

// Reset implements FailureCounter.
func (c *memoryCounter) Reset(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.remove(el)
	}
}

// Len returns the number of entries held, expired ones included.
func (c *memoryCounter) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// expire drops entries whose last failure is a window or more before now.
// The list is in order of last failure, so it stops at the first live one;
// the cost is amortized over the Adds that created the entries.
func (c *memoryCounter) expire(now time.Time) {
	for el := c.order.Front(); el != nil; el = c.order.Front() {
		if c.live(el.Value.(*counterEntry), now) {
			return
		}
		c.remove(el)
	}
}

// live reports whether e has not expired at now. Checked per entry too,
// in case a clock going backwards left the list slightly out of order.
func (c *memoryCounter) live(e *counterEntry, now time.Time) bool {
	return now.Sub(e.last) < c.window
}

func (c *memoryCounter) remove(el *list.Element) {
	delete(c.entries, el.Value.(*counterEntry).key)
	c.order.Remove(el)
}
