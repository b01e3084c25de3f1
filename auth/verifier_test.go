package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"imapproxy/store"
)

// directory is a Verifier over a map, the shape of a plugin's user file:
// it knows some logins (allow or deny) and continues for the others.
type directory struct {
	name     string
	users    map[string]string // login → password
	canon    map[string]string // login → canonical name
	attrs    map[string]string
	err      error
	seen     []string // passwords it was asked about
	tokenFor string   // a token it accepts, for this user
}

func (d *directory) Verify(_ context.Context, c Credentials) (Verdict, error) {
	if d.err != nil {
		return Verdict{}, d.err
	}
	if c.Token != "" {
		if c.Token == "good-token" {
			return Verdict{Decision: Allow, User: d.tokenFor, Source: d.name}, nil
		}
		return Verdict{Decision: Deny, Reason: "bad token", Source: d.name}, nil
	}
	d.seen = append(d.seen, c.Password)
	pw, ok := d.users[c.Username]
	switch {
	case !ok:
		return Verdict{Decision: Continue, Source: d.name}, nil
	case pw != c.Password:
		return Verdict{Decision: Deny, Reason: "wrong password", Source: d.name}, nil
	}
	return Verdict{Decision: Allow, User: d.canon[c.Username], Attributes: d.attrs, Source: d.name}, nil
}

func TestVerifierChain(t *testing.T) {
	e := newFlowEnv(t, Policy{}, 10*time.Minute)
	first := &directory{name: "first", users: map[string]string{"dave": "dave-pw"}, canon: map[string]string{"dave": "dave@example.com"},
		attrs: map[string]string{"quota": "5G"}}
	second := &directory{name: "second", users: map[string]string{"erin": "erin-pw"}}
	e.a.opts.Verifiers = []Verifier{first, second}

	id, err := e.login("dave", "dave-pw", ipA)
	if err != nil || id.User != "dave@example.com" || id.Method != MethodPlugin || !id.ProxyKnown || id.UpstreamVerifies ||
		id.Plugin != "first" || id.Attributes["quota"] != "5G" || id.Password != "dave-pw" {
		t.Fatalf("allowed by the first: %+v, %v", id, err)
	}
	if id, err := e.login("erin", "erin-pw", ipA); err != nil || id.User != "erin" || id.Plugin != "second" {
		t.Fatalf("allowed by the second: %+v, %v", id, err)
	}
	_, err = e.login("dave", "nope", ipA)
	if !errors.Is(err, ErrInvalidCredentials) || !strings.Contains(err.Error(), "wrong password") {
		t.Fatalf("denied: %v", err)
	}
	if u, _ := e.a.throttle.Counts("dave", ipA); u != 1 {
		t.Errorf("a denial is a counted failure: %d", u)
	}
	// Both continue: the built-in checks decide (carol is a store user).
	if id, err := e.login("carol", "carol-pw", ipA); err != nil || id.Method != MethodPassword {
		t.Fatalf("built-in after continue: %+v, %v", id, err)
	}
	// A failing verifier fails the login, not over to the next.
	first.err = errors.New("plugin crashed")
	if _, err := e.login("erin", "erin-pw", ipA); err == nil || errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("verifier error: %v", err)
	}
}

func TestVerifierSecondFactor(t *testing.T) {
	e := newFlowEnv(t, Policy{}, 10*time.Minute)
	// alice has a TOTP enrolment in the store (newFlowEnv).
	d := &directory{name: "dir", users: map[string]string{"alice": "dir-pw", "frank": "frank-pw"}}
	e.a.opts.Verifiers = []Verifier{d}

	if _, err := e.login("alice", "dir-pw", ipA); !errors.Is(err, ErrCodeRequired) {
		t.Fatalf("enrolled user without a code: %v", err)
	}
	code := e.code()
	id, err := e.login("alice", "dir-pw"+code, ipA)
	if err != nil || id.Method != MethodPluginTOTP || id.Password != "dir-pw" {
		t.Fatalf("with a code: %+v, %v", id, err)
	}
	if got := d.seen[len(d.seen)-1]; got != "dir-pw" {
		t.Errorf("the verifier saw the code: %q", got)
	}
	// Within the grace window from the same address.
	e.now = e.now.Add(time.Minute)
	if id, err := e.login("alice", "dir-pw", ipA); err != nil || id.Method != MethodPluginGrace {
		t.Fatalf("grace: %+v, %v", id, err)
	}
	if _, err := e.login("alice", "dir-pw", ipB); !errors.Is(err, ErrCodeRequired) {
		t.Fatalf("grace from elsewhere: %v", err)
	}
	// The verifier's require_2fa for a user without an enrolment.
	d.attrs = map[string]string{AttrRequire2FA: "true"}
	if _, err := e.login("frank", "frank-pw", ipA); !errors.Is(err, ErrCodeRequired) {
		t.Fatalf("require_2fa: %v", err)
	}
	d.attrs = nil
	if id, err := e.login("frank", "frank-pw", ipA); err != nil || id.Method != MethodPlugin {
		t.Fatalf("no 2FA: %+v, %v", id, err)
	}
}

func TestVerifierAppPasswordAndToken(t *testing.T) {
	e := newFlowEnv(t, Policy{}, 0)
	d := &directory{name: "dir", users: map[string]string{"carol": "dir-pw"}, tokenFor: "carol"}
	e.a.opts.Verifiers = []Verifier{d}
	ctx := context.Background()
	app, _ := GenerateAppPassword()
	if _, err := e.st.AddAppPassword(ctx, store.AppPassword{User: "carol", Name: "phone", Hash: HashAppPassword(app)}); err != nil {
		t.Fatal(err)
	}
	registerCheck := len(d.seen)
	if id, err := e.login("carol", app, ipA); err != nil || id.Method != MethodAppPassword || id.AppPassword != "phone" {
		t.Fatalf("app password: %+v, %v", id, err)
	}
	if len(d.seen) != registerCheck {
		t.Errorf("the verifier was asked about an app password")
	}
	id, err := e.a.Authenticate(ctx, Credentials{Token: "good-token", Remote: ipA, Mechanism: "oauthbearer"})
	if err != nil || id.User != "carol" || !id.Token || id.Password != "good-token" || id.Method != MethodPlugin {
		t.Fatalf("token: %+v, %v", id, err)
	}
	if _, err := e.a.Authenticate(ctx, Credentials{Token: "bad", Remote: ipA, Mechanism: "oauthbearer"}); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("bad token: %v", err)
	}
}
