package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	oauthIssuer   = "https://idp.example.org"
	oauthAudience = "imapproxy"
)

// jwksServer serves a key set that tests can change, counting fetches.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int32
	mu      sync.Mutex
	keys    []jose.JSONWebKey
	status  int           // if not 0, answer it with no body
	delay   time.Duration // before answering
}

func newJWKSServer(t *testing.T, keys ...jose.JSONWebKey) *jwksServer {
	s := &jwksServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		keys, status, delay := s.keys, s.status, s.delay
		s.mu.Unlock()
		time.Sleep(delay)
		if status != 0 {
			w.WriteHeader(status)
			return
		}
		var pub []jose.JSONWebKey
		for _, k := range keys {
			pub = append(pub, k.Public())
		}
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: pub})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(f func(s *jwksServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// oauthTestKey is a private signing key with its kid and algorithm.
func oauthTestKey(t *testing.T, kid string, alg jose.SignatureAlgorithm) jose.JSONWebKey {
	t.Helper()
	var priv any
	var err error
	switch alg {
	case jose.RS256, jose.PS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("no test key for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: string(alg), Use: "sig"}
}

// signJWT returns a JWT of claims signed with k.
func signJWT(t *testing.T, k jose.JSONWebKey, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Algorithm), Key: k},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// oauthClock is a settable time for OAuthOptions.Now.
type oauthClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *oauthClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *oauthClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var oauthNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func oauthTestVerifier(t *testing.T, srv *jwksServer, clock *oauthClock, mod func(*OAuthOptions)) *OAuthVerifier {
	t.Helper()
	opts := OAuthOptions{
		Issuer:     oauthIssuer,
		Audience:   oauthAudience,
		JWKSURL:    srv.URL + "/jwks.json",
		HTTPClient: srv.Client(),
		Now:        clock.Now,
	}
	if mod != nil {
		mod(&opts)
	}
	v, err := NewOAuthVerifier(opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// oauthClaims are valid claims at oauthNow, with changes applied.
func oauthClaims(changes map[string]any) map[string]any {
	c := map[string]any{
		"iss":   oauthIssuer,
		"aud":   oauthAudience,
		"sub":   "1234",
		"email": "alice@example.org",
		"iat":   oauthNow.Add(-time.Minute).Unix(),
		"nbf":   oauthNow.Add(-time.Minute).Unix(),
		"exp":   oauthNow.Add(time.Hour).Unix(),
	}
	for k, v := range changes {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func TestOAuthVerify(t *testing.T) {
	rsaKey := oauthTestKey(t, "rsa1", jose.RS256)
	ecKey := oauthTestKey(t, "ec1", jose.ES256)
	edKey := oauthTestKey(t, "ed1", jose.EdDSA)
	psKey := oauthTestKey(t, "ps1", jose.PS256)
	stranger := oauthTestKey(t, "rsa1", jose.RS256) // same kid, other key
	srv := newJWKSServer(t, rsaKey, ecKey, edKey, psKey)
	clock := &oauthClock{now: oauthNow}
	v := oauthTestVerifier(t, srv, clock, nil)

	hmacToken := func() string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("a public key used as an HMAC secret")},
			(&jose.SignerOptions{}).WithHeader("kid", "rsa1"))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := jwt.Signed(signer).Claims(oauthClaims(nil)).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}()
	b64 := base64.RawURLEncoding.EncodeToString
	payload, _ := json.Marshal(oauthClaims(nil))
	noneToken := b64([]byte(`{"alg":"none","kid":"rsa1"}`)) + "." + b64(payload) + "."

	tests := []struct {
		name    string
		token   string
		want    string
		wantErr string // substring of an ErrInvalidToken error; "" means success
	}{
		{"RS256", signJWT(t, rsaKey, oauthClaims(nil)), "alice@example.org", ""},
		{"ES256", signJWT(t, ecKey, oauthClaims(nil)), "alice@example.org", ""},
		{"EdDSA", signJWT(t, edKey, oauthClaims(nil)), "alice@example.org", ""},
		{"PS256", signJWT(t, psKey, oauthClaims(nil)), "alice@example.org", ""},
		{"audience list", signJWT(t, rsaKey, oauthClaims(map[string]any{"aud": []string{"other", oauthAudience}})), "alice@example.org", ""},
		{"expired within leeway", signJWT(t, rsaKey, oauthClaims(map[string]any{"exp": oauthNow.Add(-30 * time.Second).Unix()})), "alice@example.org", ""},
		{"no nbf nor iat", signJWT(t, rsaKey, oauthClaims(map[string]any{"nbf": nil, "iat": nil})), "alice@example.org", ""},
		{"email verified", signJWT(t, rsaKey, oauthClaims(map[string]any{"email_verified": true})), "alice@example.org", ""},
		{"expired", signJWT(t, rsaKey, oauthClaims(map[string]any{"exp": oauthNow.Add(-2 * time.Minute).Unix()})), "", "expired"},
		{"no exp", signJWT(t, rsaKey, oauthClaims(map[string]any{"exp": nil})), "", "no expiry"},
		{"not yet valid", signJWT(t, rsaKey, oauthClaims(map[string]any{"nbf": oauthNow.Add(2 * time.Minute).Unix()})), "", "not valid yet"},
		{"issued in the future", signJWT(t, rsaKey, oauthClaims(map[string]any{"iat": oauthNow.Add(2 * time.Minute).Unix()})), "", "future"},
		{"wrong issuer", signJWT(t, rsaKey, oauthClaims(map[string]any{"iss": "https://evil.example"})), "", "issuer"},
		{"no issuer", signJWT(t, rsaKey, oauthClaims(map[string]any{"iss": nil})), "", "issuer"},
		{"wrong audience", signJWT(t, rsaKey, oauthClaims(map[string]any{"aud": "someone-else"})), "", "audience"},
		{"no audience", signJWT(t, rsaKey, oauthClaims(map[string]any{"aud": nil})), "", "audience"},
		{"no user claim", signJWT(t, rsaKey, oauthClaims(map[string]any{"email": nil})), "", `"email"`},
		{"empty user claim", signJWT(t, rsaKey, oauthClaims(map[string]any{"email": ""})), "", `"email"`},
		{"user claim not a string", signJWT(t, rsaKey, oauthClaims(map[string]any{"email": 42})), "", `"email"`},
		{"user claim with newline", signJWT(t, rsaKey, oauthClaims(map[string]any{"email": "a\r\nb"})), "", "control"},
		{"email not verified", signJWT(t, rsaKey, oauthClaims(map[string]any{"email_verified": false})), "", "not verified"},
		{"bad signature", signJWT(t, stranger, oauthClaims(nil)), "", "bad signature"},
		{"key of another type", signJWT(t, jose.JSONWebKey{Key: ecKey.Key, KeyID: "rsa1", Algorithm: "ES256"}, oauthClaims(nil)), "", "bad signature"},
		{"alg none", noneToken, "", "not allowed"},
		{"HMAC", hmacToken, "", "not allowed"},
		{"garbage", "not.a.jwt", "", "compact JWS"},
		{"empty", "", "", "empty"},
		{"huge", strings.Repeat("a", MaxBearerTokenLength+1), "", "longer"},
		{"no kid, several keys", signJWT(t, jose.JSONWebKey{Key: rsaKey.Key, Algorithm: "RS256"}, oauthClaims(nil)), "", "unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user, err := v.Verify(context.Background(), tt.token)
			if tt.wantErr == "" {
				if err != nil || user != tt.want {
					t.Fatalf("Verify = %q, %v; want %q", user, err, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tt.wantErr) || user != "" {
				t.Fatalf("Verify = %q, %v; want ErrInvalidToken mentioning %q", user, err, tt.wantErr)
			}
			if len(tt.token) > 10 && strings.Contains(err.Error(), tt.token[len(tt.token)-10:]) {
				t.Fatalf("error %q contains the token", err)
			}
		})
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Errorf("%d JWKS fetches; want 1", n)
	}
}

func TestOAuthUserClaimAndSingleKey(t *testing.T) {
	k := oauthTestKey(t, "", jose.ES256)
	srv := newJWKSServer(t, k)
	v := oauthTestVerifier(t, srv, &oauthClock{now: oauthNow}, func(o *OAuthOptions) { o.UserClaim = "preferred_username" })
	user, err := v.Verify(context.Background(), signJWT(t, k, oauthClaims(map[string]any{"preferred_username": "bob", "email_verified": false})))
	if err != nil || user != "bob" {
		t.Fatalf("Verify = %q, %v; want bob", user, err)
	}
}

func TestOAuthKeyRotation(t *testing.T) {
	old, next, never := oauthTestKey(t, "k1", jose.RS256), oauthTestKey(t, "k2", jose.ES256), oauthTestKey(t, "k3", jose.ES256)
	srv := newJWKSServer(t, old)
	clock := &oauthClock{now: oauthNow}
	v := oauthTestVerifier(t, srv, clock, nil)
	ctx := context.Background()
	verify := func(k jose.JSONWebKey) error {
		t.Helper()
		_, err := v.Verify(ctx, signJWT(t, k, oauthClaims(map[string]any{"exp": clock.Now().Add(time.Hour).Unix()})))
		return err
	}
	fetches := func(want int32) {
		t.Helper()
		if n := srv.fetches.Load(); n != want {
			t.Fatalf("%d JWKS fetches; want %d", n, want)
		}
	}

	if err := verify(old); err != nil {
		t.Fatal(err)
	}
	fetches(1)
	// The issuer rotates; a token with the new kid within MinRefresh of
	// the last fetch is refused without fetching.
	srv.set(func(s *jwksServer) { s.keys = []jose.JSONWebKey{old, next} })
	clock.Advance(30 * time.Second)
	if err := verify(next); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), "unknown key") {
		t.Fatalf("new kid within MinRefresh: %v; want unknown key", err)
	}
	fetches(1)
	// After MinRefresh the unknown kid prompts a fetch, and the new key works.
	clock.Advance(31 * time.Second)
	if err := verify(next); err != nil {
		t.Fatalf("new kid after MinRefresh: %v", err)
	}
	fetches(2)
	// Another unknown kid right after: no second fetch.
	for range 3 {
		if err := verify(never); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("unknown kid: %v; want ErrInvalidToken", err)
		}
	}
	fetches(2)
	if err := verify(old); err != nil {
		t.Fatal(err)
	}
	fetches(2)
	// After an hour the set is fetched again: a withdrawn key stops working.
	srv.set(func(s *jwksServer) { s.keys = []jose.JSONWebKey{next} })
	clock.Advance(time.Hour + time.Second)
	if err := verify(old); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("withdrawn key: %v; want ErrInvalidToken", err)
	}
	fetches(3)
	// If the refresh of a stale set fails, the stale keys still serve.
	srv.set(func(s *jwksServer) { s.status = http.StatusBadGateway })
	clock.Advance(time.Hour + time.Second)
	if err := verify(next); err != nil {
		t.Fatalf("stale key while the JWKS server fails: %v", err)
	}
	fetches(4)
}

func TestOAuthUnavailable(t *testing.T) {
	k := oauthTestKey(t, "k1", jose.ES256)
	token := signJWT(t, k, oauthClaims(nil))
	ctx := context.Background()

	t.Run("server down", func(t *testing.T) {
		srv := newJWKSServer(t, k)
		v := oauthTestVerifier(t, srv, &oauthClock{now: oauthNow}, nil)
		srv.Close()
		if _, err := v.Verify(ctx, token); !errors.Is(err, ErrOAuthUnavailable) || errors.Is(err, ErrInvalidToken) {
			t.Fatalf("Verify = %v; want ErrOAuthUnavailable", err)
		}
	})
	for _, tt := range []struct {
		name string
		set  func(s *jwksServer)
	}{
		{"HTTP error", func(s *jwksServer) { s.status = http.StatusInternalServerError }},
		{"no usable keys", func(s *jwksServer) { s.keys = nil }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := newJWKSServer(t, k)
			srv.set(tt.set)
			clock := &oauthClock{now: oauthNow}
			v := oauthTestVerifier(t, srv, clock, nil)
			for range 2 {
				if _, err := v.Verify(ctx, token); !errors.Is(err, ErrOAuthUnavailable) {
					t.Fatalf("Verify = %v; want ErrOAuthUnavailable", err)
				}
			}
			// A failing server is asked at most once per MinRefresh...
			if n := srv.fetches.Load(); n != 1 {
				t.Fatalf("%d fetches; want 1", n)
			}
			// ...and is used again once it recovers.
			srv.set(func(s *jwksServer) { s.status, s.keys = 0, []jose.JSONWebKey{k} })
			clock.Advance(time.Minute)
			if _, err := v.Verify(ctx, token); err != nil {
				t.Fatalf("after recovery: %v", err)
			}
		})
	}
}

func TestOAuthConcurrentFirstUse(t *testing.T) {
	k := oauthTestKey(t, "k1", jose.ES256)
	srv := newJWKSServer(t, k)
	srv.set(func(s *jwksServer) { s.delay = 50 * time.Millisecond })
	v := oauthTestVerifier(t, srv, &oauthClock{now: oauthNow}, nil)
	token := signJWT(t, k, oauthClaims(nil))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := v.Verify(context.Background(), token)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for concurrent first use; want 1", n)
	}
}

func TestOAuthCancelledContext(t *testing.T) {
	k := oauthTestKey(t, "k1", jose.ES256)
	srv := newJWKSServer(t, k)
	v := oauthTestVerifier(t, srv, &oauthClock{now: oauthNow}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.Verify(ctx, signJWT(t, k, oauthClaims(nil))); !errors.Is(err, context.Canceled) {
		t.Fatalf("Verify = %v; want context.Canceled", err)
	}
	// The cancelled fetch does not count against MinRefresh.
	if _, err := v.Verify(context.Background(), signJWT(t, k, oauthClaims(nil))); err != nil {
		t.Fatal(err)
	}
}

func TestNewOAuthVerifier(t *testing.T) {
	good := OAuthOptions{Issuer: oauthIssuer, Audience: oauthAudience, JWKSURL: "https://idp.example.org/jwks"}
	for _, tt := range []struct {
		name string
		mod  func(*OAuthOptions)
		ok   bool
	}{
		{"https", func(*OAuthOptions) {}, true},
		{"http loopback", func(o *OAuthOptions) { o.JWKSURL = "http://127.0.0.1:8080/jwks" }, true},
		{"http localhost", func(o *OAuthOptions) { o.JWKSURL = "http://localhost/jwks" }, true},
		{"http remote", func(o *OAuthOptions) { o.JWKSURL = "http://idp.example.org/jwks" }, false},
		{"ftp", func(o *OAuthOptions) { o.JWKSURL = "ftp://idp.example.org/jwks" }, false},
		{"relative", func(o *OAuthOptions) { o.JWKSURL = "/jwks" }, false},
		{"no issuer", func(o *OAuthOptions) { o.Issuer = "" }, false},
		{"no audience", func(o *OAuthOptions) { o.Audience = "" }, false},
	} {
		opts := good
		tt.mod(&opts)
		if _, err := NewOAuthVerifier(opts); (err == nil) != tt.ok {
			t.Errorf("%s: NewOAuthVerifier error = %v; want ok %v", tt.name, err, tt.ok)
		}
	}
}
