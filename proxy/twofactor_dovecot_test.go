package proxy

// Second-factor logins against a real Dovecot 2.3 (internal/dovecot):
// skipped when Dovecot is not installed, failed instead when
// IMAPPROXY_TEST_DOVECOT=1.

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"imapproxy/config"
	"imapproxy/internal/dovecot"
)

// TestTwoFactorDovecot: a route with verify = "upstream" to Dovecot. A
// password with a TOTP code is accepted once, Dovecot getting the password
// without the code; the code is refused from another address and not
// needed within the grace window from the same one. carol's app passwords
// log in to Dovecot as alice with the upstream password sealed in the
// store; the read-only one gets EXAMINE (no \Seen from FETCH BODY[]) and
// NOPERM for STORE.
func TestTwoFactorDovecot(t *testing.T) {
	d := dovecot.StartT(t, dovecot.Options{})
	if err := d.Deliver("alice", "INBOX", textMessage(1, "two factor")); err != nil {
		t.Fatal(err)
	}
	f := newTwoFA(t)
	secret := f.enrolTOTP(t, "alice")
	const carolPW = "carol-dovecot-pw"
	f.addStoreUser(t, "carol", cheapHash(t, carolPW), "alicepw")
	roPW, _ := f.addAppPassword(t, "carol", "phone-ro", true)
	rwPW, _ := f.addAppPassword(t, "carol", "laptop", false)

	cfg := dovecotConfig(t, d, config.TLSImplicit, config.TLSImplicit)
	cfg.Listen[0].ProxyProtocol = true
	cfg.Listen[0].TrustedNets = mustPrefixes(t, "127.0.0.0/8")
	cfg.Auth.TOTPGrace = config.Duration(5 * time.Minute)
	cfg.Secrets.Key = "env:UNUSED_IN_TESTS"
	cfg.Users = []config.User{{
		Name: "carol", PasswordHash: cheapHash(t, carolPW), Upstream: "dovecot", UpstreamUser: "alice",
		UpstreamPassword: config.Secret{Kind: config.SecretStore},
	}}
	p := startProxyWith(t, cfg, f.tune(nil))

	// Password and code: Dovecot accepts alice with "alicepw" alone.
	code := totpCodeNow(t, secret)
	c1 := dialFrom(t, p.addr, "203.0.113.1", true)
	c1.mustLogin("a", "alice", "alicepw"+code)
	mustOK(c1, "b", "SELECT INBOX")
	mustOK(c1, "z", "LOGOUT")
	logData, err := os.ReadFile(d.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`imap-login: Info: Login: user=<alice>.*rip=203\.0\.113\.1`).Match(logData) {
		t.Errorf("Dovecot logged no login of alice from 203.0.113.1")
	}

	// Replay from another address.
	c2 := dialFrom(t, p.addr, "203.0.113.2", true)
	if l := c2.login("a", "alice", "alicepw"+code); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED]") {
		t.Errorf("replayed code: %q", l)
	}
	if l := c2.login("b", "alice", "alicepw"); !strings.HasPrefix(l, "b "+codeRequiredText) {
		t.Errorf("no code, no grace: %q", l)
	}

	// Grace from the same address.
	c3 := dialFrom(t, p.addr, "203.0.113.1", true)
	c3.mustLogin("a", "alice", "alicepw")
	mustOK(c3, "z", "LOGOUT")

	// A read-write app password: logs in to Dovecot with the stored
	// password and may change flags.
	rw := dialFrom(t, p.addr, "203.0.113.3", true)
	rw.mustLogin("a", "carol", rwPW)
	mustOK(rw, "b", "SELECT INBOX")
	mustOK(rw, "c", `STORE 1 +FLAGS (\Flagged)`)
	mustOK(rw, "z", "LOGOUT")

	// A read-only one: EXAMINE, FETCH works without setting \Seen, STORE
	// is refused.
	ro := dialFrom(t, p.addr, "203.0.113.4", true)
	ro.mustLogin("a", "carol", roPW)
	lines := mustOK(ro, "b", "SELECT INBOX")
	if !strings.HasPrefix(lines[len(lines)-1], "b OK [READ-ONLY]") {
		t.Errorf("SELECT with a read-only app password: %q", lines)
	}
	ro.send("c FETCH 1 BODY[]\r\n")
	raw, lits := readResponse(ro, "c")
	if len(lits) != 1 || !bytes.Contains(lits[0], []byte("Subject: two factor")) {
		t.Errorf("FETCH BODY[] read-only: %q", raw)
	}
	for _, cmd := range []string{`STORE 1 +FLAGS (\Seen)`, `UID STORE 1 -FLAGS (\Flagged)`, "EXPUNGE", "CREATE Junk"} {
		ro.send("d " + cmd + "\r\n")
		if l := ro.until("d "); !strings.HasPrefix(l[len(l)-1], "d NO [NOPERM]") {
			t.Errorf("%s read-only: %q", cmd, l)
		}
	}
	mustOK(ro, "z", "LOGOUT")

	direct := dialDovecot(t, d)
	mustOK(direct, "a", "LOGIN alice alicepw")
	mustOK(direct, "b", "EXAMINE INBOX")
	lines = mustOK(direct, "c", "FETCH 1 FLAGS")
	if !strings.Contains(lines[0], `\Flagged`) || strings.Contains(lines[0], `\Seen`) {
		t.Errorf("flags after the read-write STORE and the read-only FETCH BODY[]: %q, want \\Flagged without \\Seen", lines[0])
	}
	if strings.Contains(strings.Join(lines, "\n"), "Junk") {
		t.Errorf("refused CREATE reached Dovecot")
	}
	mustOK(direct, "z", "LOGOUT")

	assertNoSecrets(t, p.logs.String(), "alicepw", code, "alicepw"+code, carolPW, roPW, rwPW)
}
