package auth

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"imapproxy/config"
)

func TestAuthenticate(t *testing.T) {
	users := []config.User{
		{Name: "alice@example.com", PasswordHash: cheapHash(t, "alice-pw")},
		{Name: "Bob@Example.com"}, // the upstream checks Bob's password
		{Name: "broken@example.com", PasswordHash: "$argon2id$v=19$m=0,t=1,p=1$x$y"},
		{Name: "ALICE@example.com", PasswordHash: cheapHash(t, "duplicate")}, // ignored
	}
	upstream := func(login string) bool { return strings.HasSuffix(login, "@upstream.test") }
	a := NewAuthenticator(Options{Users: users, UpstreamVerifies: upstream})
	a.dummy = cheapHash(t, "dummy")

	tests := []struct {
		name     string
		user, pw string
		want     Identity
		err      error
	}{
		{"hash right", "alice@example.com", "alice-pw", Identity{User: "alice@example.com", ProxyKnown: true, Method: MethodPassword, Password: "alice-pw"}, nil},
		{"hash right, other case", "Alice@EXAMPLE.com", "alice-pw", Identity{User: "alice@example.com", ProxyKnown: true, Method: MethodPassword, Password: "alice-pw"}, nil},
		{"hash wrong", "alice@example.com", "nope", Identity{}, ErrInvalidCredentials},
		{"duplicate entry ignored", "alice@example.com", "duplicate", Identity{}, ErrInvalidCredentials},
		{"listed without hash", "bob@example.com", "anything", Identity{User: "Bob@Example.com", UpstreamVerifies: true, Method: MethodUpstream, Password: "anything"}, nil},
		{"unlisted, upstream verifies", "zed@upstream.test", "anything", Identity{User: "zed@upstream.test", UpstreamVerifies: true, Method: MethodUpstream, Password: "anything"}, nil},
		{"unlisted, no route", "zed@else.test", "anything", Identity{}, ErrInvalidCredentials},
		{"empty password, hash", "alice@example.com", "", Identity{}, ErrInvalidCredentials},
		{"empty password, upstream", "bob@example.com", "", Identity{}, ErrInvalidCredentials},
		{"empty user", "", "pw", Identity{}, ErrInvalidCredentials},
		{"password too long", "bob@example.com", strings.Repeat("x", MaxPasswordLength+1), Identity{}, ErrInvalidCredentials},
		{"malformed hash", "broken@example.com", "pw", Identity{}, ErrMalformedHash},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := a.Authenticate(context.Background(), Credentials{
				Username: tt.user, Password: tt.pw, Remote: netip.MustParseAddr("192.0.2.1"), Mechanism: "PLAIN", TLS: true,
			})
			if !errors.Is(err, tt.err) || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Authenticate = %+v, %v; want %+v, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestAuthenticateInternalErrorIsNotInvalidCredentials(t *testing.T) {
	a := NewAuthenticator(Options{Users: []config.User{{Name: "u", PasswordHash: "bogus"}}})
	_, err := a.Authenticate(context.Background(), Credentials{Username: "u", Password: "pw"})
	if err == nil || errors.Is(err, ErrInvalidCredentials) || !errors.Is(err, ErrMalformedHash) {
		t.Fatalf("err = %v; want an internal error", err)
	}
}

func TestAuthenticateNilUpstreamVerifies(t *testing.T) {
	a := NewAuthenticator(Options{})
	a.dummy = cheapHash(t, "dummy")
	if _, err := a.Authenticate(context.Background(), Credentials{Username: "x", Password: "y"}); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("err = %v, want ErrInvalidCredentials", err)
	}
}

func TestAuthenticateCancelled(t *testing.T) {
	a := NewAuthenticator(Options{UpstreamVerifies: func(string) bool { return true }})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Authenticate(ctx, Credentials{Username: "x", Password: "y"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// TestUnknownUserSpendsHashTime checks that an unknown login costs about
// as much as a wrong password for a known one.
func TestUnknownUserSpendsHashTime(t *testing.T) {
	slow := argon2Params{memory: 4096, time: 8, threads: 1, keyLen: 32}
	h, err := hashArgon2("pw", slow)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(Options{Users: []config.User{{Name: "known", PasswordHash: h}}})
	a.dummy = h // the same cost as the known user's hash
	measure := func(user string) time.Duration {
		best := time.Duration(1 << 62)
		for range 3 {
			start := time.Now()
			_, err := a.Authenticate(context.Background(), Credentials{Username: user, Password: "wrong"})
			if !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("Authenticate(%s) err = %v", user, err)
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	known, unknown := measure("known"), measure("unknown")
	if unknown < known/3 {
		t.Fatalf("unknown user took %v, known %v: no dummy hash spent", unknown, known)
	}
}

func TestDummyHashIsWellFormed(t *testing.T) {
	p, _, _, err := parseArgon2(dummyHash)
	if err != nil || p != defaultParams {
		t.Fatalf("dummyHash parses to %+v, %v; want the default parameters", p, err)
	}
}
