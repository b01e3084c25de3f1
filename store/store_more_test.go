package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestAppPasswords(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		phone := AppPassword{User: "ann", Name: "phone", Hash: []byte("hash-phone"), ReadOnly: true,
			Account: "work", Created: base, Expires: base.Add(90 * 24 * time.Hour)}
		id1, err := s.AddAppPassword(ctx, phone)
		must(t, err)
		if _, err := s.AddAppPassword(ctx, AppPassword{User: "ann", Name: "phone", Hash: []byte("other")}); !errors.Is(err, ErrExists) {
			t.Fatalf("AddAppPassword with a name in use: %v", err)
		}
		id2, err := s.AddAppPassword(ctx, AppPassword{User: "ann", Name: "laptop", Hash: []byte("hash-laptop")})
		must(t, err)
		// Names are per user.
		idBob, err := s.AddAppPassword(ctx, AppPassword{User: "bob", Name: "phone", Hash: []byte("hash-phone")})
		must(t, err)
		if id1 == id2 || id1 == idBob || id2 == idBob {
			t.Fatalf("ids not distinct: %d %d %d", id1, id2, idBob)
		}

		got, err := s.FindAppPassword(ctx, "ann", []byte("hash-phone"))
		must(t, err)
		if got.ID != id1 || got.User != "ann" || got.Name != "phone" || string(got.Hash) != "hash-phone" ||
			!got.ReadOnly || got.Account != "work" || !got.LastUsed.IsZero() || got.LastIP.IsValid() || !got.Revoked.IsZero() {
			t.Errorf("FindAppPassword = %+v", got)
		}
		timeEq(t, "Created", got.Created, phone.Created)
		timeEq(t, "Expires", got.Expires, phone.Expires)
		if _, err := s.FindAppPassword(ctx, "ann", []byte("nope")); !errors.Is(err, ErrNotFound) {
			t.Errorf("FindAppPassword of a wrong hash: %v", err)
		}
		if _, err := s.FindAppPassword(ctx, "carol", []byte("hash-phone")); !errors.Is(err, ErrNotFound) {
			t.Errorf("FindAppPassword of another user: %v", err)
		}
		laptop, err := s.FindAppPassword(ctx, "ann", []byte("hash-laptop"))
		must(t, err)
		if !laptop.Expires.IsZero() || laptop.Created.IsZero() {
			t.Errorf("laptop: Expires %v (want never), Created %v (want now)", laptop.Expires, laptop.Created)
		}

		ip := netip.MustParseAddr("2001:db8::1")
		must(t, s.TouchAppPassword(ctx, id1, base.Add(time.Minute), ip))
		if err := s.TouchAppPassword(ctx, 999999, base, ip); !errors.Is(err, ErrNotFound) {
			t.Errorf("TouchAppPassword of an unknown id: %v", err)
		}
		got, err = s.FindAppPassword(ctx, "ann", []byte("hash-phone"))
		must(t, err)
		timeEq(t, "LastUsed", got.LastUsed, base.Add(time.Minute))
		if got.LastIP != ip {
			t.Errorf("LastIP = %v, want %v", got.LastIP, ip)
		}

		revoked, err := s.RevokedAppPasswords(ctx, []int64{id1, id2, idBob})
		must(t, err)
		if len(revoked) != 0 {
			t.Errorf("RevokedAppPasswords before revoking = %v", revoked)
		}
		if err := s.RevokeAppPassword(ctx, "ann", "tablet", base); !errors.Is(err, ErrNotFound) {
			t.Errorf("RevokeAppPassword of an unknown name: %v", err)
		}
		must(t, s.RevokeAppPassword(ctx, "ann", "phone", base.Add(time.Hour)))
		if err := s.RevokeAppPassword(ctx, "ann", "phone", base.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
			t.Errorf("RevokeAppPassword twice: %v", err)
		}
		if _, err := s.FindAppPassword(ctx, "ann", []byte("hash-phone")); !errors.Is(err, ErrNotFound) {
			t.Errorf("FindAppPassword of a revoked one: %v", err)
		}
		if _, err := s.FindAppPassword(ctx, "bob", []byte("hash-phone")); err != nil {
			t.Errorf("bob's phone after ann's was revoked: %v", err)
		}
		revoked, err = s.RevokedAppPasswords(ctx, []int64{idBob, 424242, id2, id1})
		must(t, err)
		if want := []int64{424242, id1}; !slices.Equal(revoked, want) {
			t.Errorf("RevokedAppPasswords = %v, want %v (unknown ids count as revoked)", revoked, want)
		}

		// The name is free again; the revoked row stays, listed.
		id3, err := s.AddAppPassword(ctx, AppPassword{User: "ann", Name: "phone", Hash: []byte("hash-phone-2")})
		must(t, err)
		list, err := s.ListAppPasswords(ctx, "ann")
		must(t, err)
		if len(list) != 3 || list[0].ID != id1 || list[1].ID != id2 || list[2].ID != id3 {
			t.Fatalf("ListAppPasswords = %+v", list)
		}
		timeEq(t, "Revoked", list[0].Revoked, base.Add(time.Hour))
		timeEq(t, "listed LastUsed", list[0].LastUsed, base.Add(time.Minute))
		if !list[1].Revoked.IsZero() || !list[2].Revoked.IsZero() {
			t.Errorf("live ones listed as revoked: %+v", list[1:])
		}
		if list, err := s.ListAppPasswords(ctx, "carol"); err != nil || len(list) != 0 {
			t.Errorf("ListAppPasswords of nobody = %v, %v", list, err)
		}
	})
}

func TestRevokedAppPasswordsMany(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		var ids []int64
		for i := range 3 {
			id, err := s.AddAppPassword(ctx, AppPassword{User: "ann", Name: fmt.Sprint(i), Hash: []byte{byte(i)}})
			must(t, err)
			ids = append(ids, id)
		}
		must(t, s.RevokeAppPassword(ctx, "ann", "1", time.Time{}))
		// More ids than one query takes, most of them unknown.
		var query []int64
		for i := int64(1); i <= 1200; i++ {
			query = append(query, i+1000)
		}
		query = append(query, ids...)
		revoked, err := s.RevokedAppPasswords(ctx, query)
		must(t, err)
		if len(revoked) != 1201 || revoked[1200] != ids[1] {
			t.Errorf("RevokedAppPasswords: %d ids, last %d; want 1201, last %d", len(revoked), revoked[len(revoked)-1], ids[1])
		}
		if revoked, err := s.RevokedAppPasswords(ctx, nil); err != nil || len(revoked) != 0 {
			t.Errorf("RevokedAppPasswords(nil) = %v, %v", revoked, err)
		}
	})
}

func TestFailures(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		const window = 10 * time.Minute
		add := func(key string, now time.Time, want int) {
			t.Helper()
			n, err := s.AddFailure(ctx, key, now, window)
			must(t, err)
			if n != want {
				t.Errorf("AddFailure(%s, +%v) = %d, want %d", key, now.Sub(base), n, want)
			}
		}
		count := func(key string, now time.Time, want int) {
			t.Helper()
			n, err := s.CountFailures(ctx, key, now, window)
			must(t, err)
			if n != want {
				t.Errorf("CountFailures(%s, +%v) = %d, want %d", key, now.Sub(base), n, want)
			}
		}
		count("user:ann", base, 0)
		add("user:ann", base, 1)
		add("user:ann", base.Add(time.Minute), 2)
		add("user:ann", base.Add(9*time.Minute), 3)
		add("ip:192.0.2.1", base.Add(9*time.Minute), 1)
		count("user:ann", base.Add(9*time.Minute), 3)
		many, err := s.CountFailuresMany(ctx, []string{"ip:192.0.2.1", "user:nobody", "user:ann"}, base.Add(9*time.Minute), window)
		must(t, err)
		if len(many) != 3 || many[0] != 1 || many[1] != 0 || many[2] != 3 {
			t.Errorf("CountFailuresMany = %v, want [1 0 3]", many)
		}
		if many, err := s.CountFailuresMany(ctx, []string{"user:ann"}, base.Add(19*time.Minute), window); err != nil || many[0] != 0 {
			t.Errorf("CountFailuresMany after the window = %v, %v", many, err)
		}
		// The window runs from the last failure.
		count("user:ann", base.Add(18*time.Minute), 3)
		count("user:ann", base.Add(19*time.Minute-1), 3)
		count("user:ann", base.Add(19*time.Minute), 0)
		// After a window without failures the count starts over.
		add("user:ann", base.Add(19*time.Minute), 1)
		add("user:ann", base.Add(20*time.Minute), 2)
		// Expired keys are pruned by later failures without harm.
		add("ip:192.0.2.2", base.Add(time.Hour), 1)
		count("ip:192.0.2.1", base.Add(time.Hour), 0)
		add("ip:192.0.2.1", base.Add(time.Hour), 1)

		must(t, s.ResetFailures(ctx, "user:ann"))
		count("user:ann", base.Add(20*time.Minute), 0)
		add("user:ann", base.Add(20*time.Minute), 1)
		must(t, s.ResetFailures(ctx, "user:nobody"))

		// A clock that went back a little still counts.
		add("user:bob", base.Add(time.Hour), 1)
		add("user:bob", base.Add(time.Hour-time.Second), 2)
		count("user:bob", base.Add(time.Hour+window-1), 2)
	})
}

func TestEvents(t *testing.T) {
	forEach(t, func(t *testing.T, ctx context.Context, s Store) {
		if events, err := s.Events(ctx, "", 10); err != nil || len(events) != 0 {
			t.Fatalf("Events of an empty store = %v, %v", events, err)
		}
		remote := netip.MustParseAddr("198.51.100.4")
		add := []Event{
			{Time: base, User: "ann", Kind: "login", Method: "password+totp", Remote: remote},
			{Time: base.Add(time.Second), User: "bob", Kind: "login_failed", Detail: "bad password"},
			{Time: base.Add(2 * time.Second), User: "ann", Kind: "app_password_added", Detail: "phone"},
			// Same time as the previous one: order of addition decides.
			{Time: base.Add(2 * time.Second), User: "ann", Kind: "app_password_revoked", Detail: "phone"},
			// Added last but older: time decides.
			{Time: base.Add(-time.Second), User: "ann", Kind: "user_added"},
		}
		for _, e := range add {
			must(t, s.AddEvent(ctx, e))
		}
		kinds := func(events []Event) []string {
			var k []string
			for _, e := range events {
				k = append(k, e.Kind)
			}
			return k
		}
		all, err := s.Events(ctx, "", 0)
		must(t, err)
		if want := []string{"app_password_revoked", "app_password_added", "login_failed", "login", "user_added"}; !slices.Equal(kinds(all), want) {
			t.Errorf("Events(all) = %v, want %v", kinds(all), want)
		}
		login := all[3]
		if login.User != "ann" || login.Method != "password+totp" || login.Remote != remote || login.ID == 0 {
			t.Errorf("login event = %+v", login)
		}
		timeEq(t, "event Time", login.Time, base)
		if all[2].Detail != "bad password" || all[2].Remote.IsValid() {
			t.Errorf("login_failed event = %+v", all[2])
		}

		ann, err := s.Events(ctx, "ann", 2)
		must(t, err)
		if want := []string{"app_password_revoked", "app_password_added"}; !slices.Equal(kinds(ann), want) {
			t.Errorf("Events(ann, 2) = %v, want %v", kinds(ann), want)
		}
		ann, err = s.Events(ctx, "ann", 100)
		must(t, err)
		if len(ann) != 4 {
			t.Errorf("Events(ann, 100): %d events, want 4", len(ann))
		}
		if none, err := s.Events(ctx, "carol", 10); err != nil || len(none) != 0 {
			t.Errorf("Events(carol) = %v, %v", none, err)
		}

		// A zero time means now.
		before := time.Now()
		must(t, s.AddEvent(ctx, Event{User: "dan", Kind: "login"}))
		dan, err := s.Events(ctx, "dan", 1)
		must(t, err)
		if len(dan) != 1 || dan[0].Time.Before(before) || dan[0].Time.After(time.Now()) {
			t.Errorf("event with zero time = %+v", dan)
		}
	})
}
