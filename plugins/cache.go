package plugins

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// maxCacheEntries bounds a plugin's cache; when full, expired entries are
// dropped, and if none are, all of them.
const maxCacheEntries = 10000

// cache keeps a plugin's answers for a TTL. Keys are HMACs under a key
// made at start, so that a credential in a key cannot be recovered from
// the proxy's memory by guessing.
type cache struct {
	ttl time.Duration
	key []byte
	now func() time.Time

	mu sync.Mutex
	m  map[string]cacheEntry
}

type cacheEntry struct {
	val     any
	expires time.Time
}

// newCache returns a cache, or nil (no caching) for a ttl of 0.
func newCache(ttl time.Duration) *cache {
	if ttl <= 0 {
		return nil
	}
	key := make([]byte, 32)
	rand.Read(key)
	return &cache{ttl: ttl, key: key, now: time.Now, m: make(map[string]cacheEntry)}
}

// keyOf derives the cache key of a request's fields.
func (c *cache) keyOf(fields ...string) string {
	h := hmac.New(sha256.New, c.key)
	for _, f := range fields {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return string(h.Sum(nil))
}

func (c *cache) get(k string) (any, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || !c.now().Before(e.expires) {
		return nil, false
	}
	return e.val, true
}

func (c *cache) put(k string, v any) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.m) >= maxCacheEntries {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxCacheEntries {
			clear(c.m)
		}
	}
	c.m[k] = cacheEntry{val: v, expires: now.Add(c.ttl)}
}
