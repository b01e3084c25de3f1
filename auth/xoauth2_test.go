package auth

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
)

const xoauth2TestToken = "ya29.a0AfH6SMB-x_y~z+/w=="

func TestParseXOAUTH2(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		user, tok string // want; user "" means an error
	}{
		{"google form", "user=alice@example.org\x01auth=Bearer " + xoauth2TestToken + "\x01\x01", "alice@example.org", xoauth2TestToken},
		{"lowercase scheme", "user=bob\x01auth=bearer abc\x01\x01", "bob", "abc"},
		{"user with spaces", "user=Alice Smith\x01auth=Bearer abc\x01\x01", "Alice Smith", "abc"},
		{"empty", "", "", ""},
		{"no user prefix", "usr=bob\x01auth=Bearer abc\x01\x01", "", ""},
		{"one final ^A", "user=bob\x01auth=Bearer abc\x01", "", ""},
		{"no auth", "user=bob\x01\x01", "", ""},
		{"empty user", "user=\x01auth=Bearer abc\x01\x01", "", ""},
		{"empty token", "user=bob\x01auth=Bearer \x01\x01", "", ""},
		{"basic scheme", "user=bob\x01auth=Basic abc\x01\x01", "", ""},
		{"two spaces", "user=bob\x01auth=Bearer  abc\x01\x01", "", ""},
		{"extra field", "user=bob\x01host=x\x01auth=Bearer abc\x01\x01", "", ""},
		{"field after auth", "user=bob\x01auth=Bearer abc\x01x=y\x01\x01", "", ""},
		{"space in token", "user=bob\x01auth=Bearer ab c\x01\x01", "", ""},
		{"padding inside token", "user=bob\x01auth=Bearer a=b\x01\x01", "", ""},
		{"only padding", "user=bob\x01auth=Bearer ==\x01\x01", "", ""},
		{"NUL in user", "user=b\x00b\x01auth=Bearer abc\x01\x01", "", ""},
		{"three final ^A", "user=bob\x01auth=Bearer abc\x01\x01\x01", "", ""},
		{"too long", "user=bob\x01auth=Bearer " + strings.Repeat("a", maxXOAUTH2) + "\x01\x01", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, tok, err := ParseXOAUTH2([]byte(tt.in))
			if tt.user != "" {
				if err != nil || user != tt.user || tok != tt.tok {
					t.Fatalf("ParseXOAUTH2 = %q, %q, %v; want %q, %q", user, tok, err, tt.user, tt.tok)
				}
				return
			}
			if !errors.Is(err, ErrMalformedSASL) || user != "" || tok != "" {
				t.Fatalf("ParseXOAUTH2 = %q, %q, %v; want ErrMalformedSASL", user, tok, err)
			}
			if strings.Contains(err.Error(), "abc") {
				t.Fatalf("error %q contains the token", err)
			}
		})
	}
}

func TestXOAUTH2ResponseRoundTrip(t *testing.T) {
	resp := XOAUTH2Response("alice@example.org", xoauth2TestToken)
	if want := "user=alice@example.org\x01auth=Bearer " + xoauth2TestToken + "\x01\x01"; string(resp) != want {
		t.Fatalf("XOAUTH2Response = %q; want %q", resp, want)
	}
	user, tok, err := ParseXOAUTH2(resp)
	if err != nil || user != "alice@example.org" || tok != xoauth2TestToken {
		t.Fatalf("ParseXOAUTH2 = %q, %q, %v", user, tok, err)
	}
}

func TestErrorChallenges(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{string(XOAUTH2ErrorChallenge("401", "https://mail.google.com/")), `{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`},
		{string(XOAUTH2ErrorChallenge("400", "")), `{"status":"400","schemes":"bearer"}`},
		{string(OAuthBearerErrorChallenge("invalid_token")), `{"status":"invalid_token"}`},
		{string(OAuthBearerErrorChallenge(`a"b`)), `{"status":"a\"b"}`},
	} {
		if tt.got != tt.want {
			t.Errorf("challenge = %s; want %s", tt.got, tt.want)
		}
	}
}

// saslTestStep is one exchange of a sasl.Server test: the response given and
// what Next must answer.
type saslTestStep struct {
	resp      []byte
	challenge string // "" means nil or empty
	done      bool
	err       error // matched with errors.Is; nil means none
}

func runSASLTest(t *testing.T, s sasl.Server, steps []saslTestStep) {
	t.Helper()
	for i, st := range steps {
		challenge, done, err := s.Next(st.resp)
		if string(challenge) != st.challenge || done != st.done || !errors.Is(err, st.err) || (st.err == nil) != (err == nil) {
			t.Fatalf("step %d: Next = %q, %v, %v; want %q, %v, %v", i, challenge, done, err, st.challenge, st.done, st.err)
		}
	}
}

func TestXOAUTH2Server(t *testing.T) {
	auth := func(user, token string) error {
		switch token {
		case "good":
			return nil
		case "down":
			return fmt.Errorf("%w: test", ErrOAuthUnavailable)
		}
		return fmt.Errorf("%w: test", ErrInvalidToken)
	}
	good, bad, down := XOAUTH2Response("bob", "good"), XOAUTH2Response("bob", "bad"), XOAUTH2Response("bob", "down")
	failure := string(XOAUTH2ErrorChallenge("401", "imap"))
	for _, tt := range []struct {
		name  string
		steps []saslTestStep
	}{
		{"initial response", []saslTestStep{{resp: good, done: true}}},
		{"no initial response", []saslTestStep{{resp: nil}, {resp: good, done: true}}},
		{"invalid token", []saslTestStep{{resp: bad, challenge: failure}, {resp: []byte{}, done: true, err: ErrInvalidToken}}},
		{"unavailable", []saslTestStep{{resp: down, done: true, err: ErrOAuthUnavailable}}},
		{"malformed", []saslTestStep{{resp: []byte("user=bob"), done: true, err: ErrMalformedSASL}}},
		{"after the end", []saslTestStep{{resp: good, done: true}, {resp: good, done: true, err: sasl.ErrUnexpectedClientResponse}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			runSASLTest(t, NewXOAUTH2Server(auth, "imap"), tt.steps)
		})
	}
}

// TestOAuthBearerServer checks that go-sasl's OAUTHBEARER server, behind
// NewOAuthBearerServer, parses RFC 7628 client responses as needed, so
// that imapproxy need not write its own.
func TestOAuthBearerServer(t *testing.T) {
	var got sasl.OAuthBearerOptions
	auth := func(opts sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
		got = opts
		if opts.Token == "good" {
			return nil
		}
		return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
	}
	for _, tt := range []struct {
		name string
		in   string
		want sasl.OAuthBearerOptions // zero: refused before auth is called
		ok   bool
	}{
		{"RFC 7628 example", "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer good\x01\x01",
			sasl.OAuthBearerOptions{Username: "user@example.com", Host: "server.example.com", Port: 143, Token: "good"}, true},
		{"no authzid", "n,,\x01auth=Bearer good\x01\x01", sasl.OAuthBearerOptions{Token: "good"}, true},
		{"lowercase scheme", "n,,\x01auth=bearer good\x01\x01", sasl.OAuthBearerOptions{Token: "good"}, true},
		{"bad token", "n,a=bob,\x01auth=Bearer bad\x01\x01", sasl.OAuthBearerOptions{Username: "bob", Token: "bad"}, false},
		{"channel binding flag", "y,,\x01auth=Bearer good\x01\x01", sasl.OAuthBearerOptions{}, false},
		{"not GS2", "\x01auth=Bearer good\x01\x01", sasl.OAuthBearerOptions{}, false},
		{"basic scheme", "n,,\x01auth=Basic good\x01\x01", sasl.OAuthBearerOptions{}, false},
		// go-sasl refuses key/value pairs it does not know.
		{"unknown key", "n,,\x01foo=bar\x01auth=Bearer good\x01\x01", sasl.OAuthBearerOptions{}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got = sasl.OAuthBearerOptions{}
			s := NewOAuthBearerServer(auth)
			challenge, done, err := s.Next([]byte(tt.in))
			if got != tt.want {
				t.Fatalf("authenticator got %+v; want %+v", got, tt.want)
			}
			if tt.ok {
				if !done || err != nil || len(challenge) != 0 {
					t.Fatalf("Next = %q, %v, %v; want success", challenge, done, err)
				}
				return
			}
			if done || err != nil || !bytes.Contains(challenge, []byte(`"status"`)) {
				t.Fatalf("Next = %q, %v, %v; want an error challenge", challenge, done, err)
			}
			// The client's answer to the error challenge may be ^A, or
			// empty: the guard keeps go-sasl from panicking on the latter.
			for _, answer := range [][]byte{{0x01}, {}, nil} {
				s := NewOAuthBearerServer(auth)
				if _, _, err := s.Next([]byte(tt.in)); err != nil {
					t.Fatal(err)
				}
				if _, done, err := s.Next(answer); !done || err == nil {
					t.Fatalf("answer %q to the error challenge: done %v, err %v; want a failure", answer, done, err)
				}
			}
		})
	}
}

// TestOAuthBearerServerUnguarded documents the go-sasl panic that
// NewOAuthBearerServer guards against; if it fails, go-sasl was fixed and
// the guard may go.
func TestOAuthBearerServerUnguarded(t *testing.T) {
	s := sasl.NewOAuthBearerServer(func(sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
		return &sasl.OAuthBearerError{Status: "invalid_token"}
	})
	if _, _, err := s.Next([]byte("n,,\x01auth=Bearer x\x01\x01")); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Error("go-sasl no longer panics on an empty answer to its error challenge")
		}
	}()
	_, _, _ = s.Next([]byte{})
}

func FuzzParseXOAUTH2(f *testing.F) {
	for _, s := range []string{
		"user=alice@example.org\x01auth=Bearer " + xoauth2TestToken + "\x01\x01",
		"user=bob\x01auth=bearer abc\x01\x01",
		"user=\x01auth=Bearer \x01\x01",
		"user=\x01\x01",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		user, tok, err := ParseXOAUTH2(in)
		if err != nil {
			if !errors.Is(err, ErrMalformedSASL) || user != "" || tok != "" {
				t.Fatalf("ParseXOAUTH2(%q) = %q, %q, %v", in, user, tok, err)
			}
			return
		}
		if user == "" || tok == "" || strings.ContainsAny(user+tok, "\x00\x01\r\n") {
			t.Fatalf("ParseXOAUTH2(%q) = %q, %q: empty or control characters", in, user, tok)
		}
		// Only the case of "Bearer" may differ from the canonical form.
		if canon := XOAUTH2Response(user, tok); !bytes.EqualFold(canon, in) || len(canon) != len(in) {
			t.Fatalf("ParseXOAUTH2(%q) = %q, %q, which does not rebuild the input", in, user, tok)
		}
		if u2, t2, err := ParseXOAUTH2(XOAUTH2Response(user, tok)); err != nil || u2 != user || t2 != tok {
			t.Fatalf("round trip of %q: %q, %q, %v", in, u2, t2, err)
		}
	})
}
