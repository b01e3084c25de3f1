package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// ErrInvalidToken means a bearer token was refused: malformed, signed by
// an unknown key or badly, expired, or meant for someone else. Errors wrap
// it with the reason, for the log; the client gets the RFC 7628 status
// "invalid_token" (or XOAUTH2's 401).
var ErrInvalidToken = errors.New("auth: invalid bearer token")

// ErrOAuthUnavailable means a token could not be checked because the key
// set could not be fetched. It is not the client's fault: answer with a
// temporary failure, not an authentication failure.
var ErrOAuthUnavailable = errors.New("auth: OAuth key set unavailable")

// MaxBearerTokenLength bounds the bearer tokens, in bytes, that are
// parsed at all; real access tokens are a few kilobytes.
const MaxBearerTokenLength = 16 << 10

// JWKS fetching limits.
const (
	jwksMaxBody = 1 << 20
	jwksTimeout = 10 * time.Second
	// jwksMaxAge is how long a fetched key set is trusted before the next
	// Verify fetches it again, so that a key the issuer withdraws stops
	// being accepted.
	jwksMaxAge = time.Hour
)

// oauthAlgorithms are the signature algorithms accepted: asymmetric only,
// so never "none" and never HMAC keyed with a public key.
var oauthAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.ES256, jose.ES384,
	jose.PS256,
	jose.EdDSA,
}

// OAuthOptions configure an OAuthVerifier. Zero values mean defaults.
type OAuthOptions struct {
	// Issuer must equal the token's "iss" claim. Required.
	Issuer string
	// Audience must be among the token's "aud" values. Required.
	Audience string
	// JWKSURL is where the issuer publishes its JSON Web Key Set: an
	// https URL, or http to a loopback address. Required.
	JWKSURL string
	// UserClaim names the claim that holds the user name; default
	// "email". With "email", a token whose "email_verified" is false is
	// refused.
	UserClaim string
	// HTTPClient fetches the key set; default a client with a 10 s timeout.
	HTTPClient *http.Client
	// MinRefresh is the least time between two fetches of the key set
	// prompted by tokens with unknown key IDs; default one minute.
	MinRefresh time.Duration
	// Now returns the current time; default time.Now.
	Now func() time.Time
	// Leeway is the clock skew allowed on exp, nbf and iat; default one
	// minute.
	Leeway time.Duration
}

// OAuthVerifier checks OAuth 2.0 bearer tokens that are JWTs signed by a
// key of a JSON Web Key Set. The key set is fetched on first use, again
// when a token names an unknown key (at most once per MinRefresh), and
// when it is older than an hour. It is safe for concurrent use; one fetch
// runs at a time and concurrent callers wait for it.
type OAuthVerifier struct {
	opts OAuthOptions

	mu        sync.Mutex
	keys      *jose.JSONWebKeySet // nil before the first successful fetch
	fetchedAt time.Time           // of keys
	triedAt   time.Time           // of the last fetch that completed, good or bad
	lastErr   error               // of that fetch, nil if it succeeded
	inflight  chan struct{}       // non-nil while a fetch runs; closed after
}

// NewOAuthVerifier returns a verifier for opts, checking that the
// required fields are set.
func NewOAuthVerifier(opts OAuthOptions) (*OAuthVerifier, error) {
	if opts.Issuer == "" {
		return nil, errors.New("auth: OAuth: issuer is required")
	}
	if opts.Audience == "" {
		return nil, errors.New("auth: OAuth: audience is required")
	}
	u, err := url.Parse(opts.JWKSURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("auth: OAuth: JWKS URL %q is not an absolute URL", opts.JWKSURL)
	}
	switch u.Scheme {
	case "https":
	case "http":
		ip := net.ParseIP(u.Hostname())
		if u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("auth: OAuth: JWKS URL %q: http is allowed only to a loopback address", opts.JWKSURL)
		}
	default:
		return nil, fmt.Errorf("auth: OAuth: JWKS URL %q: scheme must be https", opts.JWKSURL)
	}
	if opts.UserClaim == "" {
		opts.UserClaim = "email"
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: jwksTimeout}
	}
	if opts.MinRefresh <= 0 {
		opts.MinRefresh = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Leeway <= 0 {
		opts.Leeway = time.Minute
	}
	return &OAuthVerifier{opts: opts}, nil
}

// Verify checks token and returns the user it names (the UserClaim). A
// refused token gives an error wrapping ErrInvalidToken; a key set that
// cannot be fetched, one wrapping ErrOAuthUnavailable. Errors never
// contain the token.
func (v *OAuthVerifier) Verify(ctx context.Context, token string) (user string, err error) {
	if token == "" || len(token) > MaxBearerTokenLength {
		return "", fmt.Errorf("%w: empty or longer than %d bytes", ErrInvalidToken, MaxBearerTokenLength)
	}
	tok, err := jwt.ParseSigned(token, oauthAlgorithms)
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			return "", fmt.Errorf("%w: algorithm %.20q not allowed", ErrInvalidToken, string(alg.Got))
		}
		return "", fmt.Errorf("%w: not a compact JWS", ErrInvalidToken)
	}
	if len(tok.Headers) != 1 {
		return "", fmt.Errorf("%w: not exactly one signature", ErrInvalidToken)
	}
	h := tok.Headers[0]
	keys, err := v.keysFor(ctx, h.KeyID)
	if err != nil {
		return "", err
	}
	var payload json.RawMessage
	verified := false
	for _, k := range keys {
		if (k.Algorithm != "" && k.Algorithm != h.Algorithm) || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if err := tok.Claims(k.Key, &payload); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return "", fmt.Errorf("%w: bad signature", ErrInvalidToken)
	}
	return v.checkClaims(payload)
}

// checkClaims validates the registered claims of a verified payload and
// returns the user claim.
func (v *OAuthVerifier) checkClaims(payload []byte) (string, error) {
	var std jwt.Claims
	if err := json.Unmarshal(payload, &std); err != nil {
		return "", fmt.Errorf("%w: malformed claims", ErrInvalidToken)
	}
	if std.Expiry == nil {
		return "", fmt.Errorf("%w: no expiry (exp)", ErrInvalidToken)
	}
	err := std.ValidateWithLeeway(jwt.Expected{
		Issuer:      v.opts.Issuer,
		AnyAudience: jwt.Audience{v.opts.Audience},
		Time:        v.opts.Now(),
	}, v.opts.Leeway)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrExpired):
		return "", fmt.Errorf("%w: expired", ErrInvalidToken)
	case errors.Is(err, jwt.ErrNotValidYet):
		return "", fmt.Errorf("%w: not valid yet (nbf)", ErrInvalidToken)
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return "", fmt.Errorf("%w: issued in the future (iat)", ErrInvalidToken)
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return "", fmt.Errorf("%w: wrong issuer", ErrInvalidToken)
	case errors.Is(err, jwt.ErrInvalidAudience):
		return "", fmt.Errorf("%w: wrong audience", ErrInvalidToken)
	default:
		return "", fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}

	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", fmt.Errorf("%w: malformed claims", ErrInvalidToken)
	}
	user, _ := claims[v.opts.UserClaim].(string)
	if user == "" {
		return "", fmt.Errorf("%w: no %q claim", ErrInvalidToken, v.opts.UserClaim)
	}
	for i := 0; i < len(user); i++ {
		if user[i] < 0x20 || user[i] == 0x7f {
			return "", fmt.Errorf("%w: %q claim has control characters", ErrInvalidToken, v.opts.UserClaim)
		}
	}
	if v.opts.UserClaim == "email" {
		if verified, ok := claims["email_verified"].(bool); ok && !verified {
			return "", fmt.Errorf("%w: email not verified", ErrInvalidToken)
		}
	}
	return user, nil
}

// keysFor returns the keys that may have signed a token with key ID kid,
// fetching the key set when needed. A token without a key ID is accepted
// only from a set with a single key.
func (v *OAuthVerifier) keysFor(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	fetched := false
	for {
		v.mu.Lock()
		if ch := v.inflight; ch != nil {
			v.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		now := v.opts.Now()
		var found []jose.JSONWebKey
		if v.keys != nil {
			found = lookupKeys(v.keys, kid)
		}
		fresh := v.keys != nil && now.Sub(v.fetchedAt) < jwksMaxAge
		recent := !v.triedAt.IsZero() && now.Sub(v.triedAt) < v.opts.MinRefresh
		switch {
		case len(found) > 0 && (fresh || recent || fetched):
			// A stale set is still used when it cannot be refreshed now.
			v.mu.Unlock()
			return found, nil
		case v.keys == nil && (recent || fetched):
			err := v.lastErr
			v.mu.Unlock()
			return nil, fmt.Errorf("%w: %v", ErrOAuthUnavailable, err)
		case recent || fetched:
			err := v.lastErr
			v.mu.Unlock()
			if fetched && err != nil {
				return nil, fmt.Errorf("%w: %v", ErrOAuthUnavailable, err)
			}
			return nil, fmt.Errorf("%w: unknown key", ErrInvalidToken)
		}
		ch := make(chan struct{})
		v.inflight = ch
		v.mu.Unlock()

		set, err := v.fetch(ctx)

		v.mu.Lock()
		v.inflight = nil
		close(ch)
		if err != nil && ctx.Err() != nil {
			// This caller gave up: not the server's fault, and others
			// waiting may fetch with their own context.
			v.mu.Unlock()
			return nil, ctx.Err()
		}
		v.triedAt, v.lastErr = v.opts.Now(), err
		if err == nil {
			v.keys, v.fetchedAt = set, v.triedAt
		}
		v.mu.Unlock()
		fetched = true
	}
}

// lookupKeys returns the keys of set with key ID kid, or, for an empty
// kid, the only key of a single-key set.
func lookupKeys(set *jose.JSONWebKeySet, kid string) []jose.JSONWebKey {
	if kid == "" {
		if len(set.Keys) == 1 && set.Keys[0].KeyID == "" {
			return set.Keys
		}
		return nil
	}
	return set.Key(kid)
}

// fetch gets the key set. Keys that do not parse, or are not public
// signature keys, are left out rather than failing the whole set.
func (v *OAuthVerifier) fetch(ctx context.Context) (*jose.JSONWebKeySet, error) {
	ctx, cancel := context.WithTimeout(ctx, jwksTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.opts.JWKSURL, nil)
	if err != nil {
		return nil, fmt.Errorf("JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("JWKS fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("JWKS fetch: %s answered %s", v.opts.JWKSURL, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBody+1))
	if err != nil {
		return nil, fmt.Errorf("JWKS fetch: %w", err)
	}
	if len(body) > jwksMaxBody {
		return nil, fmt.Errorf("JWKS fetch: %s: larger than %d bytes", v.opts.JWKSURL, jwksMaxBody)
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("JWKS from %s: %w", v.opts.JWKSURL, err)
	}
	set := &jose.JSONWebKeySet{}
	for _, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil || !k.Valid() {
			continue
		}
		if !k.IsPublic() {
			// A private key published by mistake still verifies as its
			// public half; a symmetric key is never used.
			pub := k.Public()
			if !pub.Valid() {
				continue
			}
			k = pub
		}
		set.Keys = append(set.Keys, k)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("JWKS from %s: no usable public keys", v.opts.JWKSURL)
	}
	return set, nil
}
