package auth

import (
	"net/netip"
	"time"
)

// Defaults of ThrottleOptions.
const (
	DefaultThrottleBase       = time.Second
	DefaultThrottleMax        = 30 * time.Second
	DefaultThrottleWindow     = 15 * time.Minute
	DefaultThrottleMaxEntries = 100_000
)

// ThrottleOptions configure a Throttle. Zero values mean the defaults.
type ThrottleOptions struct {
	// Base is the delay after the first failure (default 1s); each further
	// failure doubles it.
	Base time.Duration
	// Max caps the delay (default 30s; never below Base).
	Max time.Duration
	// Window is how long a key is remembered after its last failure
	// (default 15 minutes).
	Window time.Duration
	// MaxEntries bounds the keys held in memory (default 100,000); when
	// full, the key with the oldest last failure is forgotten. Ignored
	// when Counter is set.
	MaxEntries int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Counter holds the failure counts (default: in memory, bounded by
	// Window and MaxEntries).
	Counter FailureCounter
}

// Throttle computes growing delays after failed logins, counted per user
// and per client address. The front door waits Delay before answering a
// login attempt (or before checking it), reports the outcome with Failure
// or Success, and logs every failure. It is safe for concurrent use.
//
// IPv6 clients are counted per /64, since one host commonly holds a whole
// /64 and could otherwise rotate addresses to escape the delay. User names
// are counted under ASCII case folding, so that spelling variants of one
// login share a counter.
type Throttle struct {
	base, max time.Duration
	now       func() time.Time
	counter   FailureCounter
}

// NewThrottle returns a Throttle with the given options.
func NewThrottle(o ThrottleOptions) *Throttle {
	t := &Throttle{base: o.Base, max: o.Max, now: o.Now, counter: o.Counter}
	if t.base <= 0 {
		t.base = DefaultThrottleBase
	}
	if t.max <= 0 {
		t.max = DefaultThrottleMax
	}
	if t.max < t.base {
		t.max = t.base
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.counter == nil {
		window, entries := o.Window, o.MaxEntries
		if window <= 0 {
			window = DefaultThrottleWindow
		}
		if entries <= 0 {
			entries = DefaultThrottleMaxEntries
		}
		t.counter = newMemoryCounter(window, entries)
	}
	return t
}

// Delay returns how long to hold an attempt by user from ip: the larger of
// the two keys' delays, where a key with n recent failures has delay
// Base·2^(n-1), capped at Max, and 0 without failures. An empty user or an
// invalid ip contributes no key.
func (t *Throttle) Delay(user string, ip netip.Addr) time.Duration {
	now := t.now()
	var d time.Duration
	for _, k := range t.keys(user, ip) {
		d = max(d, t.delay(t.counter.Count(k, now)))
	}
	return d
}

// Failures returns the recent failures of user and of ip, the larger.
func (t *Throttle) Failures(user string, ip netip.Addr) int {
	u, i := t.Counts(user, ip)
	return max(u, i)
}

// Counts returns the recent failures of user and of ip (0 for an empty
// user or an invalid ip), in one look-up where the counter allows it.
func (t *Throttle) Counts(user string, ip netip.Addr) (userCount, ipCount int) {
	now := t.now()
	var uk, ik []string
	if user != "" {
		uk = t.keys(user, netip.Addr{})
	}
	if ip.IsValid() {
		ik = t.keys("", ip)
	}
	keys := append(uk, ik...)
	var counts []int
	if mc, ok := t.counter.(multiCounter); ok {
		counts = mc.CountMany(keys, now)
	} else {
		for _, k := range keys {
			counts = append(counts, t.counter.Count(k, now))
		}
	}
	if len(uk) > 0 {
		userCount = counts[0]
	}
	if len(ik) > 0 {
		ipCount = counts[len(counts)-1]
	}
	return userCount, ipCount
}

// multiCounter is a FailureCounter that counts several keys at once.
type multiCounter interface {
	CountMany(keys []string, now time.Time) []int
}

// Failure records a failed login by user from ip.
func (t *Throttle) Failure(user string, ip netip.Addr) {
	now := t.now()
	for _, k := range t.keys(user, ip) {
		t.counter.Add(k, now)
	}
}

// Success records a successful login by user from ip: it clears the user's
// failures. The address's failures stay until they expire, so that one
// account an attacker owns cannot be used to wipe the address's record
// between guesses at other accounts (password spraying).
func (t *Throttle) Success(user string, ip netip.Addr) {
	for _, k := range t.keys(user, netip.Addr{}) {
		t.counter.Reset(k)
	}
}

// delay is Base·2^(n-1) capped at Max, without overflow.
func (t *Throttle) delay(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := t.base
	for i := 1; i < n && d < t.max; i++ {
		if d > t.max/2 {
			return t.max
		}
		d *= 2
	}
	return min(d, t.max)
}

// keys returns the counter keys for user and ip; the prefixes keep the two
// namespaces apart (a user may be named like an address).
func (t *Throttle) keys(user string, ip netip.Addr) []string {
	keys := make([]string, 0, 2)
	if user != "" {
		keys = append(keys, "user:"+foldName(user))
	}
	if ip.IsValid() {
		ip = ip.Unmap().WithZone("")
		if ip.Is6() {
			p, _ := ip.Prefix(64) // cannot fail for a valid IPv6 address
			keys = append(keys, "ip:"+p.String())
		} else {
			keys = append(keys, "ip:"+ip.String())
		}
	}
	return keys
}
