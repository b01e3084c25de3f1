package proxy

// End-to-end tests of OAuth 2.0 bearer token logins (AUTHENTICATE
// OAUTHBEARER and XOAUTH2) through a running proxy, with tokens signed by
// a local RSA key published by an httptest JWKS server, and an upstream
// that takes the token by AUTHENTICATE XOAUTH2.

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"imapproxy/auth"
	"imapproxy/config"
	"imapproxy/store"
)

const (
	oauthIssuer   = "https://issuer.example"
	oauthAudience = "imapproxy-test"
)

// oauthIssuerKeys signs tokens with keys of its own; only "k1" is
// published in its JWKS.
type oauthIssuerKeys struct {
	t       testing.TB
	keys    map[string]*rsa.PrivateKey
	jwksURL string
	fetches int
	mu      sync.Mutex
}

func startOAuthIssuer(t testing.TB) *oauthIssuerKeys {
	t.Helper()
	is := &oauthIssuerKeys{t: t, keys: map[string]*rsa.PrivateKey{}}
	for _, kid := range []string{"k1", "k2"} {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		is.keys[kid] = k
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &is.keys["k1"].PublicKey, KeyID: "k1", Algorithm: string(jose.RS256), Use: "sig",
	}}}
	body, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.mu.Lock()
		is.fetches++
		is.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	is.jwksURL = srv.URL + "/jwks.json"
	return is
}

// token returns a JWT signed with key kid for user, tuned by edit.
func (is *oauthIssuerKeys) token(kid, user string, edit func(*jwt.Claims)) string {
	is.t.Helper()
	now := time.Now()
	std := jwt.Claims{
		Issuer: oauthIssuer, Audience: jwt.Audience{oauthAudience}, Subject: "sub-" + user,
		IssuedAt: jwt.NewNumericDate(now.Add(-time.Minute)), Expiry: jwt.NewNumericDate(now.Add(10 * time.Minute)),
	}
	if edit != nil {
		edit(&std)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: is.keys[kid]},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		is.t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(std).Claims(map[string]any{"email": user, "email_verified": true}).Serialize()
	if err != nil {
		is.t.Fatal(err)
	}
	return tok
}

// xoauth2Upstream is a fake upstream that takes AUTHENTICATE XOAUTH2 with
// any token and records the responses it got.
type xoauth2Upstream struct {
	*fakeUpstream
	mu    sync.Mutex
	auths []string // decoded XOAUTH2 client responses
}

func startXOAUTH2Upstream(t testing.TB) *xoauth2Upstream {
	t.Helper()
	x := &xoauth2Upstream{}
	x.fakeUpstream = startFake(t, &fakeUpstream{onConn: x.serve})
	return x
}

func (x *xoauth2Upstream) responses() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]string(nil), x.auths...)
}

func (x *xoauth2Upstream) serve(c net.Conn) {
	const caps = "IMAP4rev1 ID SASL-IR AUTH=XOAUTH2"
	br := bufio.NewReader(c)
	fmt.Fprintf(c, "* OK [CAPABILITY %s] xoauth2 fake ready\r\n", caps)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		tag := fields[0]
		switch strings.ToUpper(fields[1]) {
		case "CAPABILITY":
			fmt.Fprintf(c, "* CAPABILITY %s\r\n%s OK done\r\n", caps, tag)
		case "ID":
			fmt.Fprintf(c, "* ID NIL\r\n%s OK done\r\n", tag)
		case "AUTHENTICATE":
			if len(fields) < 3 || !strings.EqualFold(fields[2], "XOAUTH2") {
				fmt.Fprintf(c, "%s NO [CANNOT] XOAUTH2 only\r\n", tag)
				continue
			}
			enc := ""
			if len(fields) > 3 {
				enc = fields[3]
			} else {
				io.WriteString(c, "+ \r\n")
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				enc = strings.TrimSpace(l)
			}
			raw, err := base64.StdEncoding.DecodeString(enc)
			if err != nil {
				fmt.Fprintf(c, "%s BAD base64\r\n", tag)
				continue
			}
			x.mu.Lock()
			x.auths = append(x.auths, string(raw))
			x.mu.Unlock()
			fmt.Fprintf(c, "%s OK [CAPABILITY IMAP4rev1 IDLE] logged in\r\n", tag)
		case "LOGOUT":
			fmt.Fprintf(c, "* BYE bye\r\n%s OK done\r\n", tag)
			return
		default:
			fmt.Fprintf(c, "%s OK done\r\n", tag)
		}
	}
}

// oauthProxy starts a proxy offering bearer tokens from is, routing every
// user to up, on a cleartext listener (cleartext logins allowed) and a
// STARTTLS one (not allowed).
func oauthProxy(t testing.TB, is *oauthIssuerKeys, upAddr string) (*testProxy, *twoFA) {
	t.Helper()
	cfg := baseConfig(config.TLSNone, upAddr)
	cfg.Listen[0].AllowCleartextAuth = true
	cfg.Listen = append(cfg.Listen, config.Listener{Address: "127.0.0.1:0", TLS: config.TLSStartTLS})
	cfg.OAuth = config.OAuth{Issuer: oauthIssuer, Audience: oauthAudience, JWKSURL: is.jwksURL, UserClaim: "email"}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	v, err := auth.NewOAuthVerifier(auth.OAuthOptions{
		Issuer: cfg.OAuth.Issuer, Audience: cfg.OAuth.Audience, JWKSURL: cfg.OAuth.JWKSURL,
		UserClaim: cfg.OAuth.UserClaim, HTTPClient: &http.Client{Transport: tr, Timeout: 5 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := newTwoFA(t)
	p := startProxyWith(t, cfg, f.tune(func(ao *auth.Options, po *Options) {
		ao.OAuth = v
		po.BearerTokens = true
	}))
	return p, f
}

func oauthBearerResponse(user, token string) string {
	gs2 := "n,,"
	if user != "" {
		gs2 = "n,a=" + user + ","
	}
	return base64.StdEncoding.EncodeToString([]byte(gs2 + "\x01auth=Bearer " + token + "\x01\x01"))
}

func xoauth2Response(user, token string) string {
	return base64.StdEncoding.EncodeToString([]byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01"))
}

// TestOAuthCapabilities checks that the bearer mechanisms are offered where
// logins are: with cleartext allowed, and after STARTTLS.
func TestOAuthCapabilities(t *testing.T) {
	is := startOAuthIssuer(t)
	up := startXOAUTH2Upstream(t)
	p, _ := oauthProxy(t, is, up.addr())

	c := dialText(t, p.addr, false)
	if l := c.line(); !strings.Contains(l, "AUTH=OAUTHBEARER") || !strings.Contains(l, "AUTH=XOAUTH2") {
		t.Errorf("greeting with cleartext logins allowed: %q", l)
	}

	c2 := dialText(t, p.srv.Addrs()[1].String(), false)
	if l := c2.line(); strings.Contains(l, "AUTH=") || !strings.Contains(l, "LOGINDISABLED") {
		t.Errorf("greeting before STARTTLS: %q", l)
	}
	c2.send("a AUTHENTICATE OAUTHBEARER " + oauthBearerResponse("alice", is.token("k1", "alice", nil)) + "\r\n")
	if l := c2.line(); !strings.HasPrefix(l, "a NO [PRIVACYREQUIRED]") {
		t.Errorf("bearer token before STARTTLS: %q", l)
	}
	c2.send("b STARTTLS\r\n")
	c2.until("b OK")
	c2.startTLS()
	lines := c2.command("c", "CAPABILITY")
	if !strings.Contains(lines[0], "AUTH=OAUTHBEARER") || !strings.Contains(lines[0], "AUTH=XOAUTH2") || strings.Contains(lines[0], "LOGINDISABLED") {
		t.Errorf("CAPABILITY after STARTTLS: %q", lines)
	}
	tok := is.token("k1", "alice", nil)
	c2.send("d AUTHENTICATE XOAUTH2 " + xoauth2Response("alice", tok) + "\r\n")
	if l := c2.line(); !strings.HasPrefix(l, "d OK") {
		t.Errorf("XOAUTH2 after STARTTLS: %q", l)
	}
	c2.command("z", "LOGOUT")
	assertNoSecrets(t, p.logs.String(), tok)
}

// TestOAuthBearerLogin logs in with valid tokens by both mechanisms, with
// and without an initial response, and checks that the session relays to
// an upstream that got the token by XOAUTH2.
func TestOAuthBearerLogin(t *testing.T) {
	is := startOAuthIssuer(t)
	up := startXOAUTH2Upstream(t)
	p, f := oauthProxy(t, is, up.addr())
	var tokens []string

	cases := []struct {
		name string
		run  func(c *textClient, tok string) string // returns the tagged answer
	}{
		{"OAUTHBEARER SASL-IR", func(c *textClient, tok string) string {
			c.send("a AUTHENTICATE OAUTHBEARER " + oauthBearerResponse("alice", tok) + "\r\n")
			return c.line()
		}},
		{"OAUTHBEARER without user", func(c *textClient, tok string) string {
			c.send("a AUTHENTICATE OAUTHBEARER " + oauthBearerResponse("", tok) + "\r\n")
			return c.line()
		}},
		{"OAUTHBEARER continuation", func(c *textClient, tok string) string {
			c.send("a AUTHENTICATE OAUTHBEARER\r\n")
			if l := c.line(); !strings.HasPrefix(l, "+") {
				c.t.Fatalf("continuation: %q", l)
			}
			c.send(oauthBearerResponse("alice", tok) + "\r\n")
			return c.line()
		}},
		{"XOAUTH2 SASL-IR", func(c *textClient, tok string) string {
			c.send("a AUTHENTICATE XOAUTH2 " + xoauth2Response("alice", tok) + "\r\n")
			return c.line()
		}},
		{"XOAUTH2 continuation", func(c *textClient, tok string) string {
			c.send("a AUTHENTICATE XOAUTH2\r\n")
			if l := c.line(); !strings.HasPrefix(l, "+") {
				c.t.Fatalf("continuation: %q", l)
			}
			c.send(xoauth2Response("alice", tok) + "\r\n")
			return c.line()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := is.token("k1", "alice", nil)
			tokens = append(tokens, tok)
			before := len(up.responses())
			c := dialText(t, p.addr, false)
			c.line()
			if l := tc.run(c, tok); !strings.HasPrefix(l, "a OK") {
				t.Fatalf("valid token: %q", l)
			}
			if lines := c.command("b", "NOOP"); !strings.HasPrefix(lines[len(lines)-1], "b OK done") {
				t.Errorf("NOOP relayed to the upstream: %q", lines)
			}
			got := up.responses()
			if len(got) != before+1 || got[before] != "user=alice\x01auth=Bearer "+tok+"\x01\x01" {
				t.Errorf("upstream XOAUTH2 responses: %d new, want the client's token for alice", len(got)-before)
			}
			c.command("z", "LOGOUT")
		})
	}
	// The audit is written in the background: give it a moment.
	var events []store.Event
	n := 0
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		if events, err = f.st.Events(context.Background(), "alice", 0); err != nil {
			t.Fatal(err)
		}
		n = 0
		for _, e := range events {
			if e.Kind == "login" && e.Method == auth.MethodOAuth {
				n++
			}
		}
		if n >= len(cases) || time.Now().After(deadline) {
			break
		}
	}
	if n != len(cases) {
		t.Errorf("%d oauth login events for alice, want %d: %+v", n, len(cases), events)
	}
	assertNoSecrets(t, p.logs.String(), tokens...)
}

// TestOAuthBearerRefused checks refused tokens: the client gets the
// mechanism's error challenge, answers it, and then a tagged NO
// [AUTHENTICATIONFAILED]; nothing reaches the upstream.
func TestOAuthBearerRefused(t *testing.T) {
	is := startOAuthIssuer(t)
	up := startXOAUTH2Upstream(t)
	p, _ := oauthProxy(t, is, up.addr())

	bad := map[string]string{
		"expired": is.token("k1", "alice", func(c *jwt.Claims) {
			c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
			c.Expiry = jwt.NewNumericDate(time.Now().Add(-10 * time.Minute))
		}),
		"wrong audience": is.token("k1", "alice", func(c *jwt.Claims) { c.Audience = jwt.Audience{"someone-else"} }),
		"wrong issuer":   is.token("k1", "alice", func(c *jwt.Claims) { c.Issuer = "https://evil.example" }),
		"unknown kid":    is.token("k2", "alice", nil),
		"other user":     is.token("k1", "bob", nil),
		"not a JWT":      "bm90LWEtand0",
	}
	var secrets []string
	for name, tok := range bad {
		secrets = append(secrets, tok)
		t.Run(name, func(t *testing.T) {
			for _, mech := range []string{"OAUTHBEARER", "XOAUTH2"} {
				c := dialText(t, p.addr, false)
				c.line()
				var ir, status, answer string
				if mech == "OAUTHBEARER" {
					ir, status, answer = oauthBearerResponse("alice", tok), "invalid_token", "AQ=="
				} else {
					ir, status, answer = xoauth2Response("alice", tok), "401", ""
				}
				c.send("a AUTHENTICATE " + mech + " " + ir + "\r\n")
				l := c.line()
				challenge, ok := strings.CutPrefix(l, "+ ")
				if !ok {
					t.Fatalf("%s: %q, want an error challenge", mech, l)
				}
				raw, err := base64.StdEncoding.DecodeString(challenge)
				var js struct {
					Status  string `json:"status"`
					Schemes string `json:"schemes"`
				}
				if err != nil || json.Unmarshal(raw, &js) != nil || js.Status != status {
					t.Errorf("%s error challenge %q (%q): want status %q", mech, raw, l, status)
				}
				c.send(answer + "\r\n")
				if l := c.line(); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED]") {
					t.Errorf("%s after the error challenge: %q", mech, l)
				}
				c.send("z LOGOUT\r\n")
				c.until("z OK")
			}
		})
	}
	if n := len(up.responses()); n != 0 {
		t.Errorf("%d refused tokens reached the upstream", n)
	}
	// The key set was fetched once: unknown key IDs do not make every
	// login fetch it again.
	is.mu.Lock()
	fetches := is.fetches
	is.mu.Unlock()
	if fetches > 2 {
		t.Errorf("JWKS fetched %d times", fetches)
	}
	assertNoSecrets(t, p.logs.String(), secrets...)
}
