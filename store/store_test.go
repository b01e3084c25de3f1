package store

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// implementation is one Store to run the contract tests against.
type implementation struct {
	name string
	open func(t *testing.T) Store // a fresh, empty store, closed by t.Cleanup
}

// implementations lists the stores under test. PostgreSQL joins here,
// gated by an environment variable naming a test database.
func implementations(t *testing.T) []implementation {
	t.Helper()
	return []implementation{
		{name: "sqlite", open: func(t *testing.T) Store {
			return openTestSQLite(t, filepath.Join(t.TempDir(), "state.db"))
		}},
	}
}

// openTestSQLite opens path and closes it when t ends.
func openTestSQLite(t *testing.T, path string) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// forEach runs f as a subtest for every implementation, on a fresh store.
func forEach(t *testing.T, f func(t *testing.T, ctx context.Context, s Store)) {
	for _, impl := range implementations(t) {
		t.Run(impl.name, func(t *testing.T) {
			f(t, t.Context(), impl.open(t))
		})
	}
}

// base is a fixed time with nanoseconds and a non-UTC zone, to check
// exact round trips.
var base = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.FixedZone("X", 3600))

func timeEq(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestUsers(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		if _, err := s.GetUser(ctx, "ann"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetUser of nobody: %v", err)
		}
		ann := User{Name: "ann", PasswordHash: "$argon2id$x", SealedUpstreamPassword: []byte{1, 2, 3},
			Created: base, Updated: base.Add(time.Second)}
		if err := s.AddUser(ctx, ann); err != nil {
			t.Fatal(err)
		}
		if err := s.AddUser(ctx, User{Name: "ann", PasswordHash: "other"}); !errors.Is(err, ErrExists) {
			t.Fatalf("AddUser twice: %v", err)
		}
		if err := s.AddUser(ctx, User{Name: "bob", PasswordHash: "$2a$bcrypt", Disabled: true}); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetUser(ctx, "ann")
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "ann" || got.PasswordHash != ann.PasswordHash || got.Disabled ||
			!bytes.Equal(got.SealedUpstreamPassword, ann.SealedUpstreamPassword) {
			t.Errorf("GetUser = %+v, want %+v", got, ann)
		}
		timeEq(t, "Created", got.Created, ann.Created)
		timeEq(t, "Updated", got.Updated, ann.Updated)

		bob, err := s.GetUser(ctx, "bob")
		if err != nil {
			t.Fatal(err)
		}
		if !bob.Disabled || bob.SealedUpstreamPassword != nil || bob.Created.IsZero() || !bob.Updated.Equal(bob.Created) {
			t.Errorf("bob = %+v: want disabled, no upstream password, Created set and Updated = Created", bob)
		}

		users, err := s.ListUsers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(users) != 2 || users[0].Name != "ann" || users[1].Name != "bob" {
			t.Fatalf("ListUsers = %+v", users)
		}

		if err := s.SetPasswordHash(ctx, "ann", "new"); err != nil {
			t.Fatal(err)
		}
		if err := s.SetDisabled(ctx, "ann", true); err != nil {
			t.Fatal(err)
		}
		if err := s.SetSealedUpstreamPassword(ctx, "ann", nil); err != nil {
			t.Fatal(err)
		}
		got, err = s.GetUser(ctx, "ann")
		if err != nil {
			t.Fatal(err)
		}
		if got.PasswordHash != "new" || !got.Disabled || got.SealedUpstreamPassword != nil || !got.Updated.After(ann.Updated) {
			t.Errorf("after the Set methods: %+v", got)
		}
		timeEq(t, "Created after Set", got.Created, ann.Created)

		for name, err := range map[string]error{
			"SetPasswordHash":           s.SetPasswordHash(ctx, "nobody", "x"),
			"SetDisabled":               s.SetDisabled(ctx, "nobody", true),
			"SetSealedUpstreamPassword": s.SetSealedUpstreamPassword(ctx, "nobody", []byte{1}),
			"DeleteUser":                s.DeleteUser(ctx, "nobody"),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s of nobody: %v, want ErrNotFound", name, err)
			}
		}

		if err := s.DeleteUser(ctx, "ann"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetUser(ctx, "ann"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetUser after DeleteUser: %v", err)
		}
		if err := s.AddUser(ctx, User{Name: "ann", PasswordHash: "again"}); err != nil {
			t.Errorf("AddUser after DeleteUser: %v", err)
		}
	})
}

func TestDeleteUserRemovesSecondFactors(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		must(t, s.AddUser(ctx, User{Name: "ann", PasswordHash: "h"}))
		must(t, s.PutTOTP(ctx, TOTP{User: "ann", SealedSecret: []byte("s")}))
		id, err := s.AddAppPassword(ctx, AppPassword{User: "ann", Name: "phone", Hash: []byte("h1")})
		must(t, err)
		must(t, s.DeleteUser(ctx, "ann"))
		if _, err := s.GetTOTP(ctx, "ann"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetTOTP after DeleteUser: %v", err)
		}
		if aps, err := s.ListAppPasswords(ctx, "ann"); err != nil || len(aps) != 0 {
			t.Errorf("ListAppPasswords after DeleteUser = %v, %v", aps, err)
		}
		if revoked, err := s.RevokedAppPasswords(ctx, []int64{id}); err != nil || len(revoked) != 1 || revoked[0] != id {
			t.Errorf("RevokedAppPasswords after DeleteUser = %v, %v", revoked, err)
		}
		// A later app password never gets the deleted one's id.
		id2, err := s.AddAppPassword(ctx, AppPassword{User: "ann", Name: "phone", Hash: []byte("h2")})
		must(t, err)
		if id2 == id {
			t.Errorf("id %d reused after delete", id)
		}
	})
}

func TestTOTP(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		if _, err := s.GetTOTP(ctx, "ann"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetTOTP of nobody: %v", err)
		}
		if err := s.ConfirmTOTP(ctx, "ann"); !errors.Is(err, ErrNotFound) {
			t.Errorf("ConfirmTOTP of nobody: %v", err)
		}
		if err := s.DeleteTOTP(ctx, "ann"); !errors.Is(err, ErrNotFound) {
			t.Errorf("DeleteTOTP of nobody: %v", err)
		}
		// Not a store user: upstream-verified users enrol too.
		must(t, s.PutTOTP(ctx, TOTP{User: "ann", SealedSecret: []byte("one"), Created: base}))
		got, err := s.GetTOTP(ctx, "ann")
		must(t, err)
		if got.User != "ann" || string(got.SealedSecret) != "one" || got.Confirmed {
			t.Errorf("GetTOTP = %+v", got)
		}
		timeEq(t, "Created", got.Created, base)
		must(t, s.ConfirmTOTP(ctx, "ann"))
		if got, _ := s.GetTOTP(ctx, "ann"); !got.Confirmed {
			t.Error("not confirmed after ConfirmTOTP")
		}
		// PutTOTP replaces, unconfirmed again.
		must(t, s.PutTOTP(ctx, TOTP{User: "ann", SealedSecret: []byte("two"), Created: base.Add(time.Hour)}))
		got, err = s.GetTOTP(ctx, "ann")
		must(t, err)
		if string(got.SealedSecret) != "two" || got.Confirmed {
			t.Errorf("GetTOTP after replace = %+v", got)
		}
		timeEq(t, "Created after replace", got.Created, base.Add(time.Hour))
		must(t, s.DeleteTOTP(ctx, "ann"))
		if _, err := s.GetTOTP(ctx, "ann"); !errors.Is(err, ErrNotFound) {
			t.Errorf("GetTOTP after DeleteTOTP: %v", err)
		}
	})
}

// TestCredentialUsers: the names with a TOTP enrolment or an app
// password, each once, sorted, whether or not they have a user row.
func TestCredentialUsers(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		names, err := s.CredentialUsers(ctx)
		if err != nil || len(names) != 0 {
			t.Fatalf("empty store: %q, %v", names, err)
		}
		must(t, s.AddUser(ctx, User{Name: "zed", Created: base, Updated: base}))
		must(t, s.PutTOTP(ctx, TOTP{User: "carl", SealedSecret: []byte("x"), Created: base}))
		must(t, s.PutTOTP(ctx, TOTP{User: "ann", SealedSecret: []byte("x"), Created: base}))
		for _, ap := range []AppPassword{{User: "ann", Name: "phone", Hash: []byte("h1")}, {User: "bob", Name: "laptop", Hash: []byte("h2")},
			{User: "bob", Name: "phone", Hash: []byte("h3")}} {
			if _, err := s.AddAppPassword(ctx, ap); err != nil {
				t.Fatal(err)
			}
		}
		names, err = s.CredentialUsers(ctx)
		must(t, err)
		if want := []string{"ann", "bob", "carl"}; !slices.Equal(names, want) {
			t.Errorf("CredentialUsers = %q, want %q", names, want)
		}
	})
}

func TestUseTOTPStep(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		use := func(user string, step int64, keep time.Duration, want bool) {
			t.Helper()
			ok, err := s.UseTOTPStep(ctx, user, step, keep)
			if err != nil {
				t.Fatal(err)
			}
			if ok != want {
				t.Errorf("UseTOTPStep(%s, %d) = %v, want %v", user, step, ok, want)
			}
		}
		use("ann", 100, time.Hour, true)
		use("ann", 100, time.Hour, false) // replay
		use("ann", 101, time.Hour, true)
		use("bob", 100, time.Hour, true) // steps are per user
		time.Sleep(5 * time.Millisecond)
		// A short keep forgets the step used 5 ms ago.
		use("ann", 100, time.Millisecond, true)
		use("ann", 100, time.Hour, false)
	})
}

func TestTOTPGrace(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		ip := netip.MustParseAddr("192.0.2.7")
		ip6 := netip.MustParseAddr("2001:db8::7")
		until := time.Now().Add(time.Hour).Round(0)
		grace := func(user string, ip netip.Addr) time.Time {
			t.Helper()
			g, err := s.TOTPGraceUntil(ctx, user, ip)
			if err != nil {
				t.Fatal(err)
			}
			return g
		}
		if g := grace("ann", ip); !g.IsZero() {
			t.Errorf("grace before any = %v", g)
		}
		must(t, s.PutTOTPGrace(ctx, "ann", ip, until))
		timeEq(t, "grace", grace("ann", ip), until)
		if g := grace("ann", ip6); !g.IsZero() {
			t.Errorf("grace for another ip = %v", g)
		}
		if g := grace("bob", ip); !g.IsZero() {
			t.Errorf("grace for another user = %v", g)
		}
		must(t, s.PutTOTPGrace(ctx, "ann", ip, until.Add(time.Minute)))
		timeEq(t, "grace extended", grace("ann", ip), until.Add(time.Minute))
		must(t, s.PutTOTPGrace(ctx, "ann", netip.Addr{}, until))
		timeEq(t, "grace for no address", grace("ann", netip.Addr{}), until)
		must(t, s.PutTOTPGrace(ctx, "ann", netip.Addr{}, time.Time{}))
		if g := grace("ann", netip.Addr{}); !g.IsZero() {
			t.Errorf("grace after a zero until = %v", g)
		}

		// Enrolling anew or removing TOTP ends grace windows.
		must(t, s.PutTOTP(ctx, TOTP{User: "ann", SealedSecret: []byte("s")}))
		if g := grace("ann", ip); !g.IsZero() {
			t.Errorf("grace after PutTOTP = %v", g)
		}
		must(t, s.PutTOTPGrace(ctx, "ann", ip6, until))
		must(t, s.DeleteTOTP(ctx, "ann"))
		if g := grace("ann", ip6); !g.IsZero() {
			t.Errorf("grace after DeleteTOTP = %v", g)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestMeta(t *testing.T) {
	for _, impl := range implementations(t) {
		t.Run(impl.name, func(t *testing.T) {
			st := impl.open(t)
			ctx := context.Background()
			if _, err := st.GetMeta(ctx, "key-check"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("GetMeta of nothing: %v", err)
			}
			for _, v := range []string{"one", "two"} {
				if err := st.PutMeta(ctx, "key-check", []byte(v)); err != nil {
					t.Fatal(err)
				}
				got, err := st.GetMeta(ctx, "key-check")
				if err != nil || string(got) != v {
					t.Fatalf("GetMeta = %q, %v; want %q", got, err, v)
				}
			}
		})
	}
}
