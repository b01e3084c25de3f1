package proxy

// End-to-end tests of the second-factor login flows through a running
// proxy: TOTP codes appended to the password (replay, grace, the
// "password:code" form, growing delays), require_2fa, app passwords
// (read-only scope, revocation of live sessions, stored upstream
// passwords), and the persistent lockout. The upstream is imapmemserver
// (alice/alicepw, bob/bobpw); the state is a real SQLite store.

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	proxyproto "github.com/pires/go-proxyproto"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/bcrypt"

	"imapproxy/auth"
	"imapproxy/config"
	"imapproxy/store"
)

// codeRequiredText is the start of the answer to a login that lacks a
// second factor.
const codeRequiredText = "NO [AUTHENTICATIONFAILED] A one-time code is required"

// twoFA is the persistent state of a 2FA test: a SQLite store in a
// temporary directory and a sealer with a fresh key.
type twoFA struct {
	path   string
	st     *store.SQLite
	sealer *auth.Sealer
}

func newTwoFA(t testing.TB) *twoFA {
	t.Helper()
	keyText, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	key, err := auth.ParseKey(keyText)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := auth.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	f := &twoFA{path: t.TempDir() + "/state.db", sealer: sealer}
	f.open(t)
	return f
}

// open (re)opens the store; it is closed when the test ends.
func (f *twoFA) open(t testing.TB) {
	t.Helper()
	st, err := store.OpenSQLite(context.Background(), f.path)
	if err != nil {
		t.Fatal(err)
	}
	f.st = st
	t.Cleanup(func() { st.Close() })
}

// tune wires the store, the sealer and revocation polling into a proxy.
func (f *twoFA) tune(more func(*auth.Options, *Options)) func(*auth.Options, *Options) {
	return func(ao *auth.Options, po *Options) {
		ao.Store = f.st
		ao.Sealer = f.sealer
		po.Revoked = f.st.RevokedAppPasswords
		po.RevocationInterval = 200 * time.Millisecond
		if more != nil {
			more(ao, po)
		}
	}
}

// enrolTOTP gives user a confirmed TOTP enrolment and returns its secret.
func (f *twoFA) enrolTOTP(t testing.TB, user string) string {
	t.Helper()
	secret, _, err := auth.NewTOTPSecret("imapproxy-test", user)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := f.sealer.Seal([]byte(secret), auth.TOTPPurpose(user))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.PutTOTP(context.Background(), store.TOTP{User: auth.Key(user), SealedSecret: sealed, Confirmed: true}); err != nil {
		t.Fatal(err)
	}
	return secret
}

// addAppPassword adds an app password for user and returns it and its id.
func (f *twoFA) addAppPassword(t testing.TB, user, name string, readOnly bool) (string, int64) {
	t.Helper()
	pw, err := auth.GenerateAppPassword()
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.st.AddAppPassword(context.Background(), store.AppPassword{
		User: auth.Key(user), Name: name, Hash: auth.HashAppPassword(pw), ReadOnly: readOnly,
	})
	if err != nil {
		t.Fatal(err)
	}
	return pw, id
}

// addStoreUser adds a store user row holding upstreamPassword sealed.
func (f *twoFA) addStoreUser(t testing.TB, name, hash, upstreamPassword string) {
	t.Helper()
	ctx := context.Background()
	if err := f.st.AddUser(ctx, store.User{Name: auth.Key(name), PasswordHash: hash}); err != nil {
		t.Fatal(err)
	}
	sealed, err := f.sealer.Seal([]byte(upstreamPassword), auth.UpstreamPasswordPurpose(name))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.SetSealedUpstreamPassword(ctx, auth.Key(name), sealed); err != nil {
		t.Fatal(err)
	}
}

// cheapHash is a bcrypt hash of the lowest cost, to keep tests fast.
func cheapHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// totpCodeNow returns the code of secret for now, first waiting out the
// last seconds of a time step so that the proxy checks it within the same
// or the next step.
func totpCodeNow(t testing.TB, secret string) string {
	t.Helper()
	if left := auth.TOTPPeriod - time.Duration(time.Now().UnixNano())%auth.TOTPPeriod; left < 3*time.Second {
		time.Sleep(left + 100*time.Millisecond)
	}
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// wrongCode returns a six-digit code that matches none of the steps the
// proxy accepts around now.
func wrongCode(t testing.TB, secret string) string {
	t.Helper()
	taken := map[string]bool{}
	for _, d := range []time.Duration{-2, -1, 0, 1, 2} {
		c, err := totp.GenerateCode(secret, time.Now().Add(d*auth.TOTPPeriod))
		if err != nil {
			t.Fatal(err)
		}
		taken[c] = true
	}
	for i := 0; ; i++ {
		c := fmt.Sprintf("%06d", (i*104729+13)%1000000)
		if !taken[c] {
			return c
		}
	}
}

// proxyProtoListener turns the first listener of cfg into one that takes
// PROXY protocol headers from 127.0.0.0/8, with cleartext logins allowed.
func proxyProtoListener(t testing.TB, cfg *config.Config) {
	t.Helper()
	cfg.Listen[0].AllowCleartextAuth = true
	cfg.Listen[0].ProxyProtocol = true
	cfg.Listen[0].TrustedNets = mustPrefixes(t, "127.0.0.0/8")
}

// dialFrom connects to the proxy as if from ip (a PROXY protocol v2
// header), optionally with implicit TLS, and reads the greeting.
func dialFrom(t testing.TB, addr, ip string, useTLS bool) *textClient {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	header := &proxyproto.Header{
		Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
		SourceAddr:      &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000},
		DestinationAddr: &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 993},
	}
	if _, err := header.WriteTo(raw); err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	c := &textClient{t: t, conn: raw, br: newBufReader(raw)}
	if useTLS {
		c.startTLS()
	}
	if l := c.line(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting from the proxy: %q", l)
	}
	return c
}

// login sends a LOGIN with quoted arguments and returns the tagged answer.
func (c *textClient) login(tag, user, password string) string {
	c.t.Helper()
	c.send(fmt.Sprintf("%s LOGIN %q %q\r\n", tag, user, password))
	lines := c.until(tag + " ")
	return lines[len(lines)-1]
}

// mustLogin logs in and fails the test unless the answer is OK.
func (c *textClient) mustLogin(tag, user, password string) {
	c.t.Helper()
	if l := c.login(tag, user, password); !strings.HasPrefix(l, tag+" OK") {
		c.t.Fatalf("LOGIN %s: %q, want OK", user, l)
	}
}

// command sends one command and returns every line up to the tagged one.
func (c *textClient) command(tag, cmd string) []string {
	c.t.Helper()
	c.send(tag + " " + cmd + "\r\n")
	return c.until(tag + " ")
}

// assertNoSecrets checks that none of secrets appears in the logs. Six-digit
// codes only count as whole numbers, so that a duration or a timestamp
// that happens to contain the digits does not fail the test.
func assertNoSecrets(t testing.TB, logs string, secrets ...string) {
	t.Helper()
	registerSecret(secrets...)
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if len(s) == auth.TOTPDigits && strings.Trim(s, "0123456789") == "" {
			if regexp.MustCompile(`(^|[^0-9.])` + s + `([^0-9]|$)`).MatchString(logs) {
				t.Errorf("the code %s appears in the logs", s)
			}
			continue
		}
		if strings.Contains(logs, s) {
			t.Errorf("a credential (%d bytes, starting %.3q) appears in the logs", len(s), s)
		}
		if n := auth.NormalizeAppPassword(s); n != s && len(n) > 8 && strings.Contains(logs, n) {
			t.Errorf("a normalized credential appears in the logs")
		}
	}
}

// stopProxy shuts p down and waits for it; the cleanup's Shutdown is then
// a no-op.
func stopProxy(t testing.TB, p *testProxy) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	<-p.done
}

// totpConfig is a route-mode config for the memserver at upAddr, with a
// PROXY protocol listener, a one-minute TOTP grace and delays large enough
// to measure.
func totpConfig(t testing.TB, upAddr string) *config.Config {
	cfg := baseConfig(config.TLSNone, upAddr)
	proxyProtoListener(t, cfg)
	cfg.Auth.TOTPGrace = config.Duration(time.Minute)
	cfg.Limits.AuthDelay = config.Duration(100 * time.Millisecond)
	cfg.Limits.MaxAuthDelay = config.Duration(2 * time.Second)
	return cfg
}

// TestTwoFactorTOTP runs password+code logins of users the upstream
// verifies: accepted once, replay refused from another address, grace for
// the same address, "code required" elsewhere, the "password:code" form,
// and wrong codes answered after a growing delay.
func TestTwoFactorTOTP(t *testing.T) {
	upAddr, _ := startMemUpstream(t)
	f := newTwoFA(t)
	aliceSecret := f.enrolTOTP(t, "alice")
	bobSecret := f.enrolTOTP(t, "bob")
	cfg := totpConfig(t, upAddr)
	p := startProxyWith(t, cfg, f.tune(nil))

	const ip1, ip2, ip3, ip4 = "203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"
	code := totpCodeNow(t, aliceSecret)

	// 1. Password and code: accepted, and the upstream (which knows only
	// "alicepw") got the password without the code.
	c1 := dialFrom(t, p.addr, ip1, false)
	c1.mustLogin("a", "alice", "alicepw"+code)
	if lines := c1.command("b", "SELECT INBOX"); !strings.HasPrefix(lines[len(lines)-1], "b OK") {
		t.Fatalf("SELECT after a TOTP login: %q", lines)
	}
	c1.command("z", "LOGOUT")

	// 2. The same code again from another address: a replay.
	c2 := dialFrom(t, p.addr, ip2, false)
	if l := c2.login("a", "alice", "alicepw"+code); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED]") ||
		strings.Contains(l, "one-time code is required") {
		t.Errorf("replayed code from another address: %q, want NO [AUTHENTICATIONFAILED]", l)
	}

	// 3. Within the grace window, the same address needs no code.
	c3 := dialFrom(t, p.addr, ip1, false)
	c3.mustLogin("a", "alice", "alicepw")
	c3.command("z", "LOGOUT")

	// 4. Without a code from the other address: the answer says a code is
	// needed.
	if l := c2.login("b", "alice", "alicepw"); !strings.HasPrefix(l, "b "+codeRequiredText) {
		t.Errorf("no code from an address without grace: %q, want %q", l, codeRequiredText)
	}

	// 5. The "password:code" form.
	bobCode := totpCodeNow(t, bobSecret)
	c4 := dialFrom(t, p.addr, ip3, false)
	c4.mustLogin("a", "bob", "bobpw:"+bobCode)
	c4.command("z", "LOGOUT")

	// 6. Wrong codes, from an address without grace: refused, each after a
	// longer delay (100 ms, then 200 ms).
	bad := wrongCode(t, bobSecret)
	c5 := dialFrom(t, p.addr, ip4, false)
	var took [2]time.Duration
	for i := range took {
		tag := fmt.Sprintf("w%d", i)
		start := time.Now()
		l := c5.login(tag, "bob", "bobpw"+bad)
		took[i] = time.Since(start)
		if !strings.HasPrefix(l, tag+" NO [AUTHENTICATIONFAILED]") || strings.Contains(l, "one-time code is required") {
			t.Errorf("wrong code: %q, want NO [AUTHENTICATIONFAILED]", l)
		}
	}
	t.Logf("wrong-code answers took %v and %v", took[0], took[1])
	if took[0] < 100*time.Millisecond || took[1] < 200*time.Millisecond || took[1]-took[0] < 50*time.Millisecond {
		t.Errorf("delays after wrong codes %v then %v: want at least 100ms then 200ms, growing", took[0], took[1])
	}

	assertNoSecrets(t, p.logs.String(), "alicepw", "bobpw", code, bobCode, bad, "alicepw"+code, "bobpw:"+bobCode)

	// 7. The same password and code again from the address that used it,
	// within its grace window, as a client that keeps what the user typed
	// does when it opens a second connection.
	t.Run("resent within grace", func(t *testing.T) {
		c := dialFrom(t, p.addr, ip1, false)
		if l := c.login("a", "alice", "alicepw"+code); !strings.HasPrefix(l, "a OK") {
			t.Fatalf("the same password+code resent from the address that used it, within its grace window, is refused: %q", l)
		}
		c.command("z", "LOGOUT")
	})
}

// TestTwoFactorRequire2FA checks that require_2fa, from [auth] or from a
// route, refuses a login without a second factor with a text saying a
// code is needed, and admits one with a code or an app password.
func TestTwoFactorRequire2FA(t *testing.T) {
	upAddr, _ := startMemUpstream(t)
	for _, where := range []string{"auth", "route"} {
		t.Run(where, func(t *testing.T) {
			f := newTwoFA(t)
			aliceSecret := f.enrolTOTP(t, "alice")
			appPW, _ := f.addAppPassword(t, "bob", "phone", false)
			cfg := totpConfig(t, upAddr)
			if where == "auth" {
				cfg.Auth.Require2FA = true
			} else {
				cfg.Routes[0].Require2FA = true
			}
			p := startProxyWith(t, cfg, f.tune(nil))

			// bob has no TOTP: the password alone is refused.
			c := dialFrom(t, p.addr, "203.0.113.10", false)
			if l := c.login("a", "bob", "bobpw"); !strings.HasPrefix(l, "a "+codeRequiredText) {
				t.Errorf("bob without a second factor: %q, want %q", l, codeRequiredText)
			}
			// alice has TOTP: the password alone is refused, with a code
			// it passes.
			if l := c.login("b", "alice", "alicepw"); !strings.HasPrefix(l, "b "+codeRequiredText) {
				t.Errorf("alice without a code: %q, want %q", l, codeRequiredText)
			}
			code := totpCodeNow(t, aliceSecret)
			c2 := dialFrom(t, p.addr, "203.0.113.11", false)
			c2.mustLogin("a", "alice", "alicepw"+code)
			c2.command("z", "LOGOUT")
			// bob's app password is a second factor; it needs a stored
			// upstream password though, which bob (passthrough) has not.
			c3 := dialFrom(t, p.addr, "203.0.113.12", false)
			if l := c3.login("a", "bob", appPW); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED] This login cannot be used") {
				t.Errorf("app password of a passthrough user: %q", l)
			}
			assertNoSecrets(t, p.logs.String(), "alicepw", "bobpw", code, appPW)
		})
	}
}

// TestTwoFactorAppPassword checks app passwords end to end: carol is a
// [[user]] whose upstream password (alice's at the memserver) is sealed in
// the store. Her app passwords bypass her TOTP; a read-only one gets
// EXAMINE semantics and NOPERM for every change; revoking it in the store
// ends its live session with a BYE and refuses the next login.
func TestTwoFactorAppPassword(t *testing.T) {
	upAddr, alice := startMemUpstream(t)
	msg := "From: a@example.org\r\nSubject: ro\r\n\r\nread only\r\n"
	if _, err := alice.Append("INBOX", literal(msg), &imap.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	f := newTwoFA(t)
	const carolPW = "carol-secret-pw"
	f.addStoreUser(t, "carol", cheapHash(t, carolPW), "alicepw")
	f.enrolTOTP(t, "carol")
	roPW, roID := f.addAppPassword(t, "carol", "phone-ro", true)
	rwPW, _ := f.addAppPassword(t, "carol", "laptop", false)
	alicePW, _ := f.addAppPassword(t, "alice", "tablet", false)

	cfg := totpConfig(t, upAddr)
	cfg.Secrets.Key = "env:UNUSED_IN_TESTS"
	cfg.Users = []config.User{{
		Name: "carol", PasswordHash: cheapHash(t, carolPW), Upstream: "up", UpstreamUser: "alice",
		UpstreamPassword: config.Secret{Kind: config.SecretStore},
	}}
	p := startProxyWith(t, cfg, f.tune(nil))

	// carol's password alone: her TOTP is required.
	c0 := dialFrom(t, p.addr, "203.0.113.20", false)
	if l := c0.login("a", "carol", carolPW); !strings.HasPrefix(l, "a "+codeRequiredText) {
		t.Errorf("carol's password without a code: %q", l)
	}

	// The read-only app password, typed in upper case without dashes.
	ro := dialFrom(t, p.addr, "203.0.113.21", false)
	ro.mustLogin("a", "carol", strings.ToUpper(auth.NormalizeAppPassword(roPW)))
	lines := ro.command("b", "SELECT INBOX")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "b OK [READ-ONLY]") {
		t.Errorf("SELECT with a read-only app password: %q, want OK [READ-ONLY] (EXAMINE)", lines)
	}
	lines = ro.command("c", "FETCH 1 BODY[]")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "c OK") || !strings.Contains(strings.Join(lines, "\n"), "read only") {
		t.Errorf("FETCH with a read-only app password: %q", lines)
	}
	for i, cmd := range []string{
		`STORE 1 +FLAGS (\Deleted)`, `UID STORE 1 +FLAGS (\Flagged)`, "EXPUNGE", "UID EXPUNGE 1", "COPY 1 INBOX",
		"MOVE 1 Archive", "UID MOVE 1 Archive", "CREATE Archive", "DELETE INBOX", "RENAME INBOX Other",
		"APPEND INBOX {5+}\r\nhello",
	} {
		tag := fmt.Sprintf("w%d", i)
		lines := ro.command(tag, cmd)
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, tag+" NO [NOPERM]") {
			t.Errorf("%s with a read-only app password: %q, want NO [NOPERM]", cmd, lines)
		}
	}
	// A synchronizing literal: the refusal comes instead of a continuation.
	ro.send("s APPEND INBOX {5}\r\n")
	if l := ro.line(); !strings.HasPrefix(l, "s NO [NOPERM]") {
		t.Errorf("APPEND with a synchronizing literal, read-only: %q, want s NO [NOPERM]", l)
	}
	if lines := ro.command("n", "NOOP"); !strings.HasPrefix(lines[len(lines)-1], "n OK") {
		t.Fatalf("NOOP after the refused commands: %q", lines)
	}
	// Nothing changed at the memserver. (\Seen is not checked here: the
	// memserver sets it on FETCH BODY[] even in an EXAMINEd mailbox; the
	// Dovecot test checks it.)
	for _, name := range []string{"Archive", "Other"} {
		if _, err := alice.Status(name, &imap.StatusOptions{NumMessages: true}); err == nil {
			t.Errorf("mailbox %s exists after the refused commands", name)
		}
	}
	status, err := alice.Status("INBOX", &imap.StatusOptions{NumMessages: true})
	if err != nil || status.NumMessages == nil || *status.NumMessages != 1 {
		t.Errorf("INBOX after the refused commands: %+v, %v", status, err)
	}

	// A read-write app password of the same user, at the same time.
	rw := dialFrom(t, p.addr, "203.0.113.22", false)
	rw.mustLogin("a", "carol", rwPW)
	rw.command("b", "SELECT INBOX")
	if lines := rw.command("c", `STORE 1 +FLAGS (\Flagged)`); !strings.HasPrefix(lines[len(lines)-1], "c OK") {
		t.Errorf("STORE with a read-write app password: %q", lines)
	}

	// Revoking the read-only app password ends its session, not the other.
	revoked := time.Now()
	if err := f.st.RevokeAppPassword(context.Background(), "carol", "phone-ro", revoked); err != nil {
		t.Fatal(err)
	}
	ro.conn.SetDeadline(time.Now().Add(5 * time.Second))
	rest := ro.expectClosed()
	if len(rest) == 0 || !strings.HasPrefix(rest[len(rest)-1], "* BYE") {
		t.Errorf("session of a revoked app password: %q, want * BYE then close", rest)
	}
	t.Logf("revoked session closed after %v", time.Since(revoked))
	if lines := rw.command("d", "NOOP"); !strings.HasPrefix(lines[len(lines)-1], "d OK") {
		t.Errorf("the other app password's session after the revocation: %q", lines)
	}
	ids, err := f.st.RevokedAppPasswords(context.Background(), []int64{roID})
	if err != nil || len(ids) != 1 {
		t.Fatalf("revoked ids: %v, %v", ids, err)
	}
	again := dialFrom(t, p.addr, "203.0.113.21", false)
	if l := again.login("a", "carol", roPW); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED]") {
		t.Errorf("login with a revoked app password: %q", l)
	}
	rw.command("z", "LOGOUT")

	// alice's app password: alice's upstream password is her own
	// (passthrough), which the proxy does not hold.
	c := dialFrom(t, p.addr, "203.0.113.23", false)
	if l := c.login("a", "alice", alicePW); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED] This login cannot be used") {
		t.Errorf("app password of a passthrough user: %q", l)
	}

	// The last use is recorded.
	aps, err := f.st.ListAppPasswords(context.Background(), "carol")
	if err != nil {
		t.Fatal(err)
	}
	for _, ap := range aps {
		if ap.LastUsed.IsZero() || !ap.LastIP.IsValid() {
			t.Errorf("app password %q: last use not recorded: %+v", ap.Name, ap)
		}
	}
	assertNoSecrets(t, p.logs.String(), carolPW, "alicepw", roPW, rwPW, alicePW)
}

// TestTwoFactorLockoutSurvivesRestart checks that failures counted in the
// store lock the user out of a new proxy on the same state.
func TestTwoFactorLockoutSurvivesRestart(t *testing.T) {
	upAddr, _ := startMemUpstream(t)
	f := newTwoFA(t)
	cfg := totpConfig(t, upAddr)
	cfg.Limits.AuthDelay = config.Duration(time.Millisecond)
	cfg.Limits.MaxAuthDelay = config.Duration(10 * time.Millisecond)
	cfg.Auth.LockoutThreshold = 3
	cfg.Auth.LockoutWindow = config.Duration(10 * time.Minute)
	p := startProxyWith(t, cfg, f.tune(nil))

	for i := range 3 {
		c := dialFrom(t, p.addr, fmt.Sprintf("203.0.113.%d", 30+i), false)
		if l := c.login("a", "bob", fmt.Sprintf("wrong-%d", i)); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED] Authentication failed") {
			t.Fatalf("wrong password %d: %q", i, l)
		}
	}
	c := dialFrom(t, p.addr, "203.0.113.40", false)
	if l := c.login("a", "bob", "bobpw"); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED] Too many failed logins") {
		t.Fatalf("right password after 3 failures: %q, want locked", l)
	}
	// alice is not affected.
	c2 := dialFrom(t, p.addr, "203.0.113.41", false)
	c2.mustLogin("a", "alice", "alicepw")
	c2.command("z", "LOGOUT")
	stopProxy(t, p)
	if err := f.st.Close(); err != nil {
		t.Fatal(err)
	}

	f.open(t)
	p2 := startProxyWith(t, cfg, f.tune(nil))
	c3 := dialFrom(t, p2.addr, "203.0.113.42", false)
	if l := c3.login("a", "bob", "bobpw"); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED] Too many failed logins") {
		t.Errorf("right password after a restart: %q, want still locked", l)
	}
	c4 := dialFrom(t, p2.addr, "203.0.113.43", false)
	c4.mustLogin("a", "alice", "alicepw")
	c4.command("z", "LOGOUT")
	assertNoSecrets(t, p.logs.String()+p2.logs.String(), "alicepw", "bobpw", "wrong-0", "wrong-1", "wrong-2")
}
