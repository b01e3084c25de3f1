package auth

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for throttle tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newTestThrottle(o ThrottleOptions) (*Throttle, *fakeClock) {
	clock := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	o.Now = clock.Now
	return NewThrottle(o), clock
}

var (
	ip1 = netip.MustParseAddr("192.0.2.1")
	ip2 = netip.MustParseAddr("192.0.2.2")
)

func TestThrottleGrowthAndCap(t *testing.T) {
	th, _ := newTestThrottle(ThrottleOptions{Base: time.Second, Max: 10 * time.Second})
	want := []time.Duration{0, 1, 2, 4, 8, 10, 10, 10}
	for i, w := range want {
		if got := th.Delay("alice", ip1); got != w*time.Second {
			t.Fatalf("after %d failures: Delay = %v, want %v", i, got, w*time.Second)
		}
		th.Failure("alice", ip1)
	}
}

func TestThrottleNoOverflow(t *testing.T) {
	th, _ := newTestThrottle(ThrottleOptions{Base: time.Hour, Max: time.Duration(1<<63 - 1)})
	for range 100 {
		th.Failure("u", netip.Addr{})
	}
	if d := th.Delay("u", netip.Addr{}); d <= 0 || d > time.Duration(1<<63-1) {
		t.Fatalf("Delay after 100 failures = %v", d)
	}
	if got := th.delay(1 << 20); got != th.max {
		t.Fatalf("delay(huge) = %v, want max", got)
	}
}

func TestThrottleKeys(t *testing.T) {
	tests := []struct {
		name         string
		failUser     string
		failIP       netip.Addr
		askUser      string
		askIP        netip.Addr
		wantThrottle bool
	}{
		{"same user other IP", "alice", ip1, "alice", ip2, true},
		{"same IP other user", "alice", ip1, "bob", ip1, true},
		{"other user other IP", "alice", ip1, "bob", ip2, false},
		{"user case folded", "Alice@Example.com", ip1, "alice@example.COM", ip2, true},
		{"IPv4-mapped IPv6 is IPv4", "a", netip.MustParseAddr("::ffff:192.0.2.1"), "b", ip1, true},
		{"IPv6 same /64", "a", netip.MustParseAddr("2001:db8:1:2::1"), "b", netip.MustParseAddr("2001:db8:1:2:ffff::9"), true},
		{"IPv6 zone ignored", "a", netip.MustParseAddr("fe80::1%eth0"), "b", netip.MustParseAddr("fe80::2"), true},
		{"IPv6 other /64", "a", netip.MustParseAddr("2001:db8:1:2::1"), "b", netip.MustParseAddr("2001:db8:1:3::1"), false},
		{"user named like an IP", "192.0.2.1", netip.Addr{}, "x", ip1, false},
		{"no user key", "", ip1, "", ip1, true},
		{"no IP key", "alice", netip.Addr{}, "alice", netip.Addr{}, true},
		{"empty keys count nothing", "", netip.Addr{}, "", netip.Addr{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th, _ := newTestThrottle(ThrottleOptions{})
			th.Failure(tt.failUser, tt.failIP)
			got := th.Delay(tt.askUser, tt.askIP) > 0
			if got != tt.wantThrottle {
				t.Fatalf("Delay > 0 is %v, want %v", got, tt.wantThrottle)
			}
		})
	}
}

func TestThrottleMaxOfKeys(t *testing.T) {
	th, _ := newTestThrottle(ThrottleOptions{Base: time.Second, Max: time.Minute})
	for range 3 {
		th.Failure("alice", ip1) // alice: 3, ip1: 3
	}
	th.Failure("bob", ip2) // bob: 1, ip2: 1
	if d := th.Delay("bob", ip1); d != 4*time.Second {
		t.Fatalf("Delay(bob, ip1) = %v, want ip1's 4s", d)
	}
	if d := th.Delay("alice", ip2); d != 4*time.Second {
		t.Fatalf("Delay(alice, ip2) = %v, want alice's 4s", d)
	}
}

func TestThrottleExpiry(t *testing.T) {
	th, clock := newTestThrottle(ThrottleOptions{Base: time.Second, Window: 10 * time.Minute})
	th.Failure("alice", ip1)
	clock.Advance(9 * time.Minute)
	th.Failure("alice", ip1) // the window restarts at each failure
	clock.Advance(9 * time.Minute)
	if d := th.Delay("alice", ip1); d != 2*time.Second {
		t.Fatalf("Delay within window = %v, want 2s", d)
	}
	clock.Advance(time.Minute)
	if d := th.Delay("alice", ip1); d != 0 {
		t.Fatalf("Delay after window = %v, want 0", d)
	}
	th.Failure("alice", ip1)
	if d := th.Delay("alice", ip1); d != time.Second {
		t.Fatalf("Delay after a fresh failure = %v, want 1s (count restarted)", d)
	}
	if n := th.counter.(*memoryCounter).Len(); n != 2 {
		t.Fatalf("%d entries held, want 2 (expired ones dropped)", n)
	}
}

func TestThrottleDefaultWindow(t *testing.T) {
	th, clock := newTestThrottle(ThrottleOptions{})
	th.Failure("alice", netip.Addr{})
	clock.Advance(DefaultThrottleWindow - time.Second)
	if th.Delay("alice", netip.Addr{}) != DefaultThrottleBase {
		t.Fatal("forgotten before the default window")
	}
	clock.Advance(time.Second)
	if th.Delay("alice", netip.Addr{}) != 0 {
		t.Fatal("remembered after the default window")
	}
}

func TestThrottleSuccessResets(t *testing.T) {
	th, _ := newTestThrottle(ThrottleOptions{})
	for range 3 {
		th.Failure("alice", ip1)
	}
	th.Failure("bob", ip2)
	th.Success("ALICE", ip1)
	if d := th.Delay("alice", ip2); d != DefaultThrottleBase {
		t.Fatalf("Delay(alice, ip2) = %v: alice not cleared or ip2 cleared", d)
	}
	if d := th.Delay("carol", ip1); d != 4*DefaultThrottleBase {
		t.Fatalf("Delay(carol, ip1) = %v: ip1's failures must outlive a success", d)
	}
	if d := th.Delay("bob", netip.Addr{}); d != DefaultThrottleBase {
		t.Fatalf("Delay(bob) = %v: another user cleared", d)
	}
}

func TestThrottleEviction(t *testing.T) {
	th, clock := newTestThrottle(ThrottleOptions{MaxEntries: 3})
	for i := range 3 {
		th.Failure(fmt.Sprintf("u%d", i), netip.Addr{})
		clock.Advance(time.Second)
	}
	th.Failure("u0", netip.Addr{}) // u0 is now the most recent
	clock.Advance(time.Second)
	th.Failure("u3", netip.Addr{}) // evicts u1, the oldest last failure
	c := th.counter.(*memoryCounter)
	if n := c.Len(); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
	for user, want := range map[string]bool{"u0": true, "u1": false, "u2": true, "u3": true} {
		if got := th.Delay(user, netip.Addr{}) > 0; got != want {
			t.Errorf("%s remembered = %v, want %v", user, got, want)
		}
	}
	for i := range 1000 {
		th.Failure(fmt.Sprintf("flood%d", i), netip.MustParseAddr(fmt.Sprintf("10.0.%d.%d", i/256, i%256)))
	}
	if n := c.Len(); n != 3 {
		t.Fatalf("%d entries after a flood, want 3", n)
	}
}

func TestThrottleDefaults(t *testing.T) {
	th := NewThrottle(ThrottleOptions{})
	if th.base != DefaultThrottleBase || th.max != DefaultThrottleMax || th.now == nil {
		t.Fatalf("defaults: base %v max %v", th.base, th.max)
	}
	c := th.counter.(*memoryCounter)
	if c.window != DefaultThrottleWindow || c.maxEntries != DefaultThrottleMaxEntries {
		t.Fatalf("defaults: window %v entries %d", c.window, c.maxEntries)
	}
	if th := NewThrottle(ThrottleOptions{Base: time.Minute, Max: time.Second}); th.max != time.Minute {
		t.Fatalf("Max below Base: max = %v, want Base", th.max)
	}
}

// countingCounter is a FailureCounter double, to check Throttle uses the
// one it is given.
type countingCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (c *countingCounter) Count(key string, _ time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[key]
}

func (c *countingCounter) Add(key string, _ time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[key]++
	return c.counts[key]
}

func (c *countingCounter) Reset(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.counts, key)
}

func TestThrottleCustomCounter(t *testing.T) {
	c := &countingCounter{counts: map[string]int{}}
	th := NewThrottle(ThrottleOptions{Counter: c})
	th.Failure("alice", ip1)
	th.Failure("alice", ip1)
	if c.counts["user:alice"] != 2 || c.counts["ip:192.0.2.1"] != 2 {
		t.Fatalf("counts = %v", c.counts)
	}
	if d := th.Delay("alice", netip.Addr{}); d != 2*DefaultThrottleBase {
		t.Fatalf("Delay = %v", d)
	}
}

func TestThrottleConcurrent(t *testing.T) {
	th, clock := newTestThrottle(ThrottleOptions{MaxEntries: 50})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				user := fmt.Sprintf("u%d", (g*200+i)%97)
				ip := netip.AddrFrom4([4]byte{10, 0, byte(g), byte(i)})
				th.Failure(user, ip)
				th.Delay(user, ip)
				if i%10 == 0 {
					th.Success(user, ip)
					clock.Advance(time.Second)
				}
			}
		}()
	}
	wg.Wait()
	if n := th.counter.(*memoryCounter).Len(); n > 50 {
		t.Fatalf("%d entries, bound is 50", n)
	}
}
