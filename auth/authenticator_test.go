package auth

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"imapproxy/config"
	"imapproxy/store"
)

// flowEnv is an Authenticator over a real SQLite store, with a clock the
// test moves.
type flowEnv struct {
	t      *testing.T
	st     store.Store
	sealer *Sealer
	now    time.Time
	a      *Authenticator
	path   string
	secret string // alice's TOTP secret
}

var (
	ipA = netip.MustParseAddr("192.0.2.10")
	ipB = netip.MustParseAddr("198.51.100.20")
)

func newFlowEnv(t *testing.T, pol Policy, grace time.Duration) *flowEnv {
	t.Helper()
	e := &flowEnv{t: t, now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), path: filepath.Join(t.TempDir(), "state.db")}
	key, _ := ParseKey(mustKey(t))
	var err error
	if e.sealer, err = NewSealer(key); err != nil {
		t.Fatal(err)
	}
	e.open(pol, grace)
	ctx := context.Background()
	// alice is a config user (proxy checks), bob is verified by the
	// upstream, carol lives in the store.
	if err := e.st.AddUser(ctx, store.User{Name: "carol", PasswordHash: cheapHash(t, "carol-pw")}); err != nil {
		t.Fatal(err)
	}
	e.secret, _, err = NewTOTPSecret("test", "alice")
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := e.sealer.Seal([]byte(e.secret), TOTPPurpose("alice"))
	if err := e.st.PutTOTP(ctx, store.TOTP{User: "alice", SealedSecret: sealed, Confirmed: true}); err != nil {
		t.Fatal(err)
	}
	sealedBob, _ := e.sealer.Seal([]byte(e.secret), TOTPPurpose("bob"))
	if err := e.st.PutTOTP(ctx, store.TOTP{User: "bob", SealedSecret: sealedBob, Confirmed: true}); err != nil {
		t.Fatal(err)
	}
	return e
}

func mustKey(t *testing.T) string {
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// open (re)creates the store handle and the Authenticator, as a restart.
func (e *flowEnv) open(pol Policy, grace time.Duration) {
	st, err := store.OpenSQLite(context.Background(), e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { st.Close() })
	e.st = st
	a := NewAuthenticator(Options{
		Users:            []config.User{{Name: "alice", PasswordHash: cheapHash(e.t, "alice-pw")}},
		Store:            st,
		Sealer:           e.sealer,
		UpstreamVerifies: func(login string) bool { return login == "bob" },
		Policy:           func(string) Policy { return pol },
		TOTPGrace:        grace,
		LockoutThreshold: 10,
		LockoutWindow:    time.Hour,
		DelayBase:        time.Millisecond,
		DelayMax:         time.Millisecond,
		Now:              func() time.Time { return e.now },
	})
	e.t.Cleanup(a.Close) // before the store closes
	e.a = a
	e.a.dummy = cheapHash(e.t, "dummy")
}

func (e *flowEnv) code() string {
	c, err := totp.GenerateCode(e.secret, e.now)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *flowEnv) login(user, pw string, ip netip.Addr) (Identity, error) {
	id, err := e.a.Authenticate(context.Background(), Credentials{Username: user, Password: pw, Remote: ip, Mechanism: "login"})
	if err == nil {
		e.a.Succeeded(context.Background(), id, ip, "login")
	} else if errors.Is(err, ErrInvalidCredentials) {
		e.a.Failed(context.Background(), user, ip, "login", err.Error())
	}
	return id, err
}

func TestTOTPFlow(t *testing.T) {
	e := newFlowEnv(t, Policy{}, 10*time.Minute)
	code := e.code()
	id, err := e.login("alice", "alice-pw"+code, ipA)
	if err != nil || id.Method != MethodPasswordTOTP || id.Password != "alice-pw" {
		t.Fatalf("password+code: %+v, %v", id, err)
	}
	// The same code again, from elsewhere: a replay.
	if _, err := e.login("alice", "alice-pw"+code, ipB); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("replayed code accepted: %v", err)
	}
	// The same password+code again from the same address, within the
	// grace window: a client opening another connection, not a replay.
	if id, err := e.login("alice", "alice-pw"+code, ipA); err != nil || id.Method != MethodGrace || id.Password != "alice-pw" {
		t.Fatalf("resent within grace: %+v, %v", id, err)
	}
	// From the first address, within the grace window: no code needed.
	e.now = e.now.Add(5 * time.Minute)
	if id, err := e.login("alice", "alice-pw", ipA); err != nil || id.Method != MethodGrace {
		t.Fatalf("grace: %+v, %v", id, err)
	}
	// Not from the other address.
	if _, err := e.login("alice", "alice-pw", ipB); !errors.Is(err, ErrCodeRequired) {
		t.Fatalf("grace from another address: %v", err)
	}
	// Nor after the window.
	e.now = e.now.Add(6 * time.Minute)
	if _, err := e.login("alice", "alice-pw", ipA); !errors.Is(err, ErrCodeRequired) {
		t.Fatalf("after grace: %v", err)
	}
	// The colon form, and a wrong code.
	e.now = e.now.Add(time.Minute)
	if id, err := e.login("alice", "alice-pw:"+e.code(), ipB); err != nil || id.Method != MethodPasswordTOTP {
		t.Fatalf("password:code: %+v, %v", id, err)
	}
	if _, err := e.login("alice", "alice-pw000000", ipB); !errors.Is(err, ErrInvalidCredentials) || errors.Is(err, ErrCodeRequired) {
		t.Fatalf("wrong code: %v", err)
	}
	// A right code with a wrong password does not use up the code.
	e.now = e.now.Add(time.Minute)
	c := e.code()
	if _, err := e.login("alice", "nope"+c, ipB); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("wrong password with code: %v", err)
	}
	if _, err := e.login("alice", "alice-pw"+c, ipB); err != nil {
		t.Fatalf("code spent by a failed attempt: %v", err)
	}
}

func TestTOTPUpstreamVerified(t *testing.T) {
	e := newFlowEnv(t, Policy{}, 0)
	id, err := e.login("bob", "upstream-secret"+e.code(), ipA)
	if err != nil || !id.UpstreamVerifies || id.Password != "upstream-secret" || id.Method != MethodUpstreamTOTP {
		t.Fatalf("upstream-verified with code: %+v, %v", id, err)
	}
	if _, err := e.login("bob", "upstream-secret", ipA); !errors.Is(err, ErrCodeRequired) {
		t.Fatalf("without code: %v", err)
	}
}

func TestRequire2FA(t *testing.T) {
	e := newFlowEnv(t, Policy{Require2FA: true}, 0)
	if _, err := e.login("carol", "carol-pw", ipA); !errors.Is(err, ErrCodeRequired) {
		t.Fatalf("carol without a second factor: %v", err)
	}
	e2 := newFlowEnv(t, Policy{}, 0)
	if id, err := e2.login("carol", "carol-pw", ipA); err != nil || id.Method != MethodPassword || !id.ProxyKnown {
		t.Fatalf("store user: %+v, %v", id, err)
	}
}

func TestAppPasswords(t *testing.T) {
	e := newFlowEnv(t, Policy{Require2FA: true}, 0)
	ctx := context.Background()
	pw, _ := GenerateAppPassword()
	ro, _ := GenerateAppPassword()
	old, _ := GenerateAppPassword()
	id1, err := e.st.AddAppPassword(ctx, store.AppPassword{User: "alice", Name: "phone", Hash: HashAppPassword(pw)})
	if err != nil {
		t.Fatal(err)
	}
	e.st.AddAppPassword(ctx, store.AppPassword{User: "alice", Name: "tablet", Hash: HashAppPassword(ro), ReadOnly: true})
	e.st.AddAppPassword(ctx, store.AppPassword{User: "alice", Name: "old", Hash: HashAppPassword(old), Expires: e.now.Add(-time.Hour)})

	id, err := e.login("alice", pw, ipA)
	if err != nil || id.Method != MethodAppPassword || id.AppPasswordID != id1 || id.ReadOnly || id.Password != "" {
		t.Fatalf("app password (bypasses TOTP): %+v, %v", id, err)
	}
	if id, err := e.login("ALICE", ro, ipA); err != nil || !id.ReadOnly || id.AppPassword != "tablet" {
		t.Fatalf("read-only app password: %+v, %v", id, err)
	}
	if _, err := e.login("alice", old, ipA); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("expired app password: %v", err)
	}
	// Another user's login with alice's app password.
	if _, err := e.login("carol", pw, ipA); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("app password of another user: %v", err)
	}
	list, _ := e.st.ListAppPasswords(ctx, "alice")
	for _, ap := range list {
		if ap.Name == "phone" && (ap.LastUsed.IsZero() || ap.LastIP != ipA) {
			t.Errorf("last use not recorded: %+v", ap)
		}
	}
	if err := e.st.RevokeAppPassword(ctx, "alice", "phone", e.now); err != nil {
		t.Fatal(err)
	}
	if _, err := e.login("alice", pw, ipA); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("revoked app password: %v", err)
	}
	// The app password gives no password to pass through; the stored
	// upstream password stands in when there is one.
	if _, _, err := e.a.UpstreamSecret(ctx, config.Secret{Kind: config.SecretPassthrough}, id); !errors.Is(err, ErrNoPassthrough) {
		t.Fatalf("passthrough of an app password login without a stored password: %v", err)
	}
	sealed, _ := e.sealer.Seal([]byte("alice-upstream"), UpstreamPasswordPurpose("alice"))
	e.st.AddUser(ctx, store.User{Name: "alice", SealedUpstreamPassword: sealed})
	if v, _, err := e.a.UpstreamSecret(ctx, config.Secret{Kind: config.SecretPassthrough}, id); err != nil || v != "alice-upstream" {
		t.Fatalf("passthrough of an app password login with a stored password: %q, %v", v, err)
	}
}

func TestLockoutSurvivesRestart(t *testing.T) {
	e := newFlowEnv(t, Policy{}, 0)
	for i := 0; i < 10; i++ {
		e.login("carol", "wrong", ipB)
	}
	e.open(Policy{}, 0) // a restart: new handle, new Authenticator
	if _, err := e.login("carol", "carol-pw", ipA); !errors.Is(err, ErrLocked) {
		t.Fatalf("user not locked after restart: %v", err)
	}
	if _, err := e.login("alice", "alice-pw"+e.code(), ipB); !errors.Is(err, ErrLocked) {
		t.Fatalf("address not locked after restart: %v", err)
	}
	e.now = e.now.Add(2 * time.Hour)
	if _, err := e.login("carol", "carol-pw", ipA); err != nil {
		t.Fatalf("lock did not expire: %v", err)
	}
}

func TestStoredUpstreamPassword(t *testing.T) {
	e := newFlowEnv(t, Policy{}, 0)
	ctx := context.Background()
	sealed, _ := e.sealer.Seal([]byte("the-upstream-pw"), UpstreamPasswordPurpose("carol"))
	if err := e.st.SetSealedUpstreamPassword(ctx, "carol", sealed); err != nil {
		t.Fatal(err)
	}
	id := Identity{User: "carol"}
	v, x, err := e.a.UpstreamSecret(ctx, config.Secret{Kind: config.SecretStore}, id)
	if err != nil || v != "the-upstream-pw" || x {
		t.Fatalf("stored: %q %v %v", v, x, err)
	}
	// Sealed for carol, it does not open as someone else's.
	e.st.AddUser(ctx, store.User{Name: "mallory", PasswordHash: cheapHash(t, "m"), SealedUpstreamPassword: sealed})
	if _, _, err := e.a.UpstreamSecret(ctx, config.Secret{Kind: config.SecretStore}, Identity{User: "mallory"}); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("moved sealed secret opened: %v", err)
	}
	// Without the right key the TOTP secret stays closed.
	other, _ := ParseKey(mustKey(t))
	e.sealer, _ = NewSealer(other)
	e.open(Policy{}, 0)
	if _, err := e.login("alice", "alice-pw"+e.code(), ipA); err == nil || errors.Is(err, ErrInvalidCredentials) || !errors.Is(err, ErrWrongKey) {
		t.Fatalf("TOTP with the wrong server key: %v", err)
	}
}

// TestHashChecksAreBounded checks that no more than MaxConcurrentHashes
// password hashes run at once, whatever the number of logins.
func TestHashChecksAreBounded(t *testing.T) {
	h := cheapHash(t, "pw")
	a := NewAuthenticator(Options{Users: []config.User{{Name: "u", PasswordHash: h}}, MaxConcurrentHashes: 2})
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.Authenticate(context.Background(), Credentials{Username: "u", Password: "pw"})
		}()
	}
	wg.Wait()
	if m := a.maxInUse.Load(); m > 2 || m < 1 {
		t.Fatalf("%d hash checks ran at once, want at most 2", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	a.hashes <- struct{}{}
	a.hashes <- struct{}{} // every slot taken
	if _, err := a.Authenticate(ctx, Credentials{Username: "u", Password: "pw"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting for a slot did not end with the context: %v", err)
	}
}

// TestAuditWrittenByClose checks that Close writes every queued event.
func TestAuditWrittenByClose(t *testing.T) {
	st, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := NewAuthenticator(Options{Store: st, UpstreamVerifies: func(string) bool { return true }})
	const n = 200
	for i := 0; i < n; i++ {
		a.Failed(context.Background(), "bob", ipA, "login", "test")
	}
	a.Close()
	events, err := st.Events(context.Background(), "bob", 0)
	if err != nil || len(events) != n {
		t.Fatalf("%d events after Close, want %d (%v)", len(events), n, err)
	}
}
