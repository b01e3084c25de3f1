package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"imapproxy/auth"
	"imapproxy/config"
	"imapproxy/store"
)

// adminConfig writes a config whose state is in a temp dir; with withKey,
// [secrets] key points to a file written from keygen's output.
func adminConfig(t *testing.T, withKey bool) (cfgPath, keyPath string) {
	t.Helper()
	dir := t.TempDir()
	secrets := ""
	if withKey {
		keyPath = filepath.Join(dir, "server.key")
		writeKey(t, keyPath)
		secrets = fmt.Sprintf("[secrets]\nkey = %q\n", "file:"+keyPath)
	}
	text := fmt.Sprintf(`
state_dir = %q
[[listen]]
address = "127.0.0.1:0"
tls = "none"
allow_cleartext_auth = true
[[upstream]]
name = "mem"
address = "127.0.0.1:1"
tls = "none"
[[route]]
match = "*"
upstream = "mem"
[[user]]
name = "Carol"
upstream = "mem"
%s`, filepath.Join(dir, "state"), secrets)
	cfgPath = filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, keyPath
}

// writeKey writes a new key from "imapproxy keygen" to path, mode 0600.
func writeKey(t *testing.T, path string) {
	t.Helper()
	code, out, errs := runCmd(t, "", "keygen")
	if code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, errs)
	}
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
}

// testState opens the state of the config at path, as the server would.
func testState(t *testing.T, path string) *state {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := openState(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.close)
	return st
}

// mustRun runs the command and fails the test unless it exits with want.
func mustRun(t *testing.T, want int, stdin string, args ...string) (stdout, stderr string) {
	t.Helper()
	code, out, errs := runCmd(t, stdin, args...)
	if code != want {
		t.Fatalf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, out, errs)
	}
	return out, errs
}

func TestAdminUsers(t *testing.T) {
	cfg, _ := adminConfig(t, true)
	mustRun(t, 0, "s3cret\n", "user", "add", "Alice", "-config", cfg)
	_, errs := mustRun(t, 1, "other\n", "user", "add", "-config", cfg, "alice")
	if !strings.Contains(errs, "already exists") {
		t.Errorf("second add: %q", errs)
	}
	if _, errs := mustRun(t, 1, "", "user", "add", "-config", cfg, "bob"); !strings.Contains(errs, "no password") {
		t.Errorf("empty password: %q", errs)
	}
	mustRun(t, 2, "x\n", "user", "add", "-config", cfg, "a b")
	mustRun(t, 2, "x\n", "user", "add", "-config", cfg)

	st := testState(t, cfg)
	ctx := context.Background()
	u, err := st.store.GetUser(ctx, "alice")
	if err != nil || u.Name != "alice" {
		t.Fatalf("store user: %+v, %v", u, err)
	}
	if ok, _ := auth.CheckPassword(u.PasswordHash, "s3cret"); !ok {
		t.Fatal("stored hash does not verify the password")
	}

	mustRun(t, 0, "n3w\n", "user", "passwd", "ALICE", "-config", cfg)
	u, _ = st.store.GetUser(ctx, "alice")
	if ok, _ := auth.CheckPassword(u.PasswordHash, "n3w"); !ok {
		t.Fatal("passwd did not change the hash")
	}
	if _, errs := mustRun(t, 1, "x\n", "user", "passwd", "carol", "-config", cfg); !strings.Contains(errs, "config file") {
		t.Errorf("passwd of a config user: %q", errs)
	}

	// A stored upstream password for a config user makes a store row
	// without a password hash, sealed for the login flow's purpose.
	mustRun(t, 0, "upstream-pw\n", "user", "upstream-password", "-config", cfg, "Carol")
	c, err := st.store.GetUser(ctx, "carol")
	if err != nil || c.PasswordHash != "" {
		t.Fatalf("carol: %+v, %v", c, err)
	}
	if pw, err := st.sealer.Open(c.SealedUpstreamPassword, auth.UpstreamPasswordPurpose("carol")); err != nil || string(pw) != "upstream-pw" {
		t.Fatalf("sealed upstream password: %q, %v", pw, err)
	}

	out, _ := mustRun(t, 0, "", "user", "disable", "alice", "-config", cfg)
	if !strings.Contains(out, "Disabled") {
		t.Errorf("disable: %q", out)
	}
	// A user the upstream verifies has no row, but may have enrolled.
	if err := st.store.PutTOTP(ctx, store.TOTP{User: "dave", SealedSecret: []byte("x"), Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	out, _ = mustRun(t, 0, "", "user", "list", "-config", cfg)
	if strings.Contains(out, "$argon2") || strings.Contains(out, u.PasswordHash) {
		t.Fatalf("list shows a hash:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^alice +store +yes +no +no +0 +\d{4}-`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^carol +config\+store\(no-password\) +no +no +stored +0 `).MatchString(out) ||
		!regexp.MustCompile(`(?m)^dave +upstream +no +unconfirmed +no +0 `).MatchString(out) {
		t.Errorf("list:\n%s", out)
	}
	mustRun(t, 0, "", "user", "enable", "alice", "-config", cfg)
	if u, _ := st.store.GetUser(ctx, "alice"); u.Disabled {
		t.Error("still disabled")
	}
	mustRun(t, 0, "", "user", "delete", "alice", "-config", cfg)
	if _, errs := mustRun(t, 1, "", "user", "delete", "alice", "-config", cfg); !strings.Contains(errs, "no user alice") {
		t.Errorf("second delete: %q", errs)
	}
	if out, _ := mustRun(t, 0, "", "user", "list", "-config", cfg); strings.Contains(out, "alice") {
		t.Errorf("deleted user listed:\n%s", out)
	}
	mustRun(t, 1, "", "user", "disable", "nobody", "-config", cfg)
}

// codeReader is a stdin for "user totp enroll": when first read, it takes
// the secret from what the command has printed so far and answers with
// the lines that answer makes of it.
type codeReader struct {
	out    *bytes.Buffer
	answer func(secret string) []string
	secret string
	r      io.Reader
}

func (c *codeReader) Read(p []byte) (int, error) {
	if c.r == nil {
		m := regexp.MustCompile(`otpauth://\S+`).FindString(c.out.String())
		u, err := url.Parse(m)
		if err != nil || u.Query().Get("secret") == "" {
			return 0, fmt.Errorf("no otpauth URI printed before reading: %q", c.out.String())
		}
		c.secret = u.Query().Get("secret")
		c.r = strings.NewReader(strings.Join(c.answer(c.secret), "\n") + "\n")
	}
	return c.r.Read(p)
}

// enroll runs "user totp enroll" with the answers made by answer.
func enroll(t *testing.T, cfg string, answer func(string) []string, flags ...string) (code int, secret, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	in := &codeReader{out: &out, answer: answer}
	args := append([]string{"user", "totp", "enroll", "-config", cfg}, flags...)
	code = run(append(args, "alice"), &out, &errb, in)
	return code, in.secret, out.String(), errb.String()
}

func rightCode(t *testing.T) func(string) []string {
	return func(secret string) []string {
		c, err := totp.GenerateCode(secret, time.Now())
		if err != nil {
			t.Error(err)
		}
		return []string{c[:3] + " " + c[3:]}
	}
}

// wrongCodes are three codes none of which is valid around now.
func wrongCodes(secret string) []string {
	c, _ := totp.GenerateCode(secret, time.Now())
	bad := []byte(c)
	for {
		bad[5] = '0' + (bad[5]-'0'+1)%10
		if _, ok := auth.MatchTOTP(secret, string(bad), time.Now()); !ok {
			break
		}
	}
	return []string{"12345", "abcdef", string(bad)}
}

func TestAdminTOTP(t *testing.T) {
	cfg, _ := adminConfig(t, true)
	st := testState(t, cfg)
	ctx := context.Background()

	code, secret, out, errs := enroll(t, cfg, wrongCodes)
	if code != 1 || !strings.Contains(errs, "left unconfirmed") {
		t.Fatalf("wrong codes: exit %d\n%s\n%s", code, out, errs)
	}
	if tt, err := st.store.GetTOTP(ctx, "alice"); err != nil || tt.Confirmed {
		t.Fatalf("after wrong codes: %+v, %v", tt, err)
	}

	code, secret, out, errs = enroll(t, cfg, rightCode(t))
	if code != 0 {
		t.Fatalf("enroll: exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"▀", "Enter the 6-digit code from your app:", "\n  " + secret + "\n", "issuer=imapproxy"} {
		if !strings.Contains(out, want) {
			t.Errorf("enroll output lacks %q:\n%s", want, out)
		}
	}
	tt, err := st.store.GetTOTP(ctx, "alice")
	if err != nil || !tt.Confirmed {
		t.Fatalf("after a right code: %+v, %v", tt, err)
	}
	if s, err := st.sealer.Open(tt.SealedSecret, auth.TOTPPurpose("alice")); err != nil || string(s) != secret {
		t.Fatalf("sealed secret: %v", err)
	}
	// A confirmed enrolment is not replaced without -replace, and is kept
	// when the replacement is not confirmed.
	if code, _, _, errs := enroll(t, cfg, rightCode(t)); code != 1 || !strings.Contains(errs, "-replace") {
		t.Fatalf("enroll over a confirmed one: exit %d %q", code, errs)
	}
	code, _, out, errs = enroll(t, cfg, wrongCodes, "-replace", "-no-qr")
	if code != 1 || !strings.Contains(errs, "previous enrolment of alice is kept") || strings.Contains(out, "▀") {
		t.Fatalf("replace with wrong codes: exit %d\n%s\n%s", code, out, errs)
	}
	if tt2, _ := st.store.GetTOTP(ctx, "alice"); !tt2.Confirmed || !bytes.Equal(tt2.SealedSecret, tt.SealedSecret) {
		t.Fatal("the previous enrolment was not kept")
	}

	mustRun(t, 0, "", "user", "totp", "remove", "alice", "-config", cfg)
	if _, errs := mustRun(t, 1, "", "user", "totp", "remove", "alice", "-config", cfg); !strings.Contains(errs, "no TOTP enrolment") {
		t.Errorf("second remove: %q", errs)
	}

	out, _ = mustRun(t, 0, "", "audit", "-config", cfg, "alice")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], "totp_removed") || !strings.Contains(lines[2], "totp_enrolled") {
		t.Errorf("audit:\n%s", out)
	}
}

// TestAdminTOTPUsedCode checks that the code that confirmed an enrolment
// is recorded as used, so that it cannot also serve for a login.
func TestAdminTOTPUsedCode(t *testing.T) {
	cfg, _ := adminConfig(t, true)
	st := testState(t, cfg)
	var used string
	code, secret, _, errs := enroll(t, cfg, func(s string) []string {
		used = rightCode(t)(s)[0]
		return []string{used}
	})
	if code != 0 {
		t.Fatalf("enroll: exit %d: %s", code, errs)
	}
	step, ok := auth.MatchTOTP(secret, strings.ReplaceAll(used, " ", ""), time.Now())
	if !ok {
		t.Skip("the code's step has passed") // only on a very slow run
	}
	fresh, err := st.store.UseTOTPStep(context.Background(), "alice", step, 3*time.Minute)
	if err != nil || fresh {
		t.Fatalf("the confirming code's step is still fresh (%v)", err)
	}
}

func TestAdminTOTPNeedsKey(t *testing.T) {
	cfg, _ := adminConfig(t, false)
	code, _, out, errs := enroll(t, cfg, rightCode(t))
	if code != 1 || !strings.Contains(errs, "[secrets] key is not configured") || strings.Contains(out, "otpauth") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if _, errs := mustRun(t, 1, "pw\n", "user", "upstream-password", "bob", "-config", cfg); !strings.Contains(errs, "[secrets] key") {
		t.Errorf("upstream-password without a key: %q", errs)
	}
}

var appPasswordRE = regexp.MustCompile(`^[2-9a-z]{4}(-[2-9a-z]{4}){5}\n$`)

func TestAdminAppPasswords(t *testing.T) {
	cfg, _ := adminConfig(t, false)
	st := testState(t, cfg)
	ctx := context.Background()
	out, errs := mustRun(t, 0, "", "app-password", "add", "Alice", "-config", cfg, "-name", "phone", "-read-only", "-expires", "90d")
	if !appPasswordRE.MatchString(out) || !auth.LooksLikeAppPassword(strings.TrimSpace(out)) {
		t.Fatalf("password %q", out)
	}
	if !strings.Contains(errs, "shown only this once") || strings.Contains(errs, strings.TrimSpace(out)) {
		t.Errorf("note: %q", errs)
	}
	pw := strings.TrimSpace(out)
	ap, err := st.store.FindAppPassword(ctx, "alice", auth.HashAppPassword(strings.ToUpper(pw)))
	if err != nil || ap.Name != "phone" || !ap.ReadOnly || ap.Account != "" {
		t.Fatalf("stored: %+v, %v", ap, err)
	}
	if d := time.Until(ap.Expires) - 90*24*time.Hour; d > 0 || d < -time.Minute {
		t.Errorf("expires %v", ap.Expires)
	}
	out2, _ := mustRun(t, 0, "", "app-password", "add", "alice", "-config", cfg, "-name", "laptop", "-account", "work")
	if out2 == out {
		t.Fatal("same password twice")
	}
	if _, errs := mustRun(t, 1, "", "app-password", "add", "alice", "-config", cfg, "-name", "phone"); !strings.Contains(errs, "already has an app password") {
		t.Errorf("duplicate name: %q", errs)
	}
	if _, errs := mustRun(t, 1, "", "app-password", "add", "alice", "-config", cfg); !strings.Contains(errs, "-name is required") {
		t.Errorf("no name: %q", errs)
	}
	if _, errs := mustRun(t, 1, "", "app-password", "add", "alice", "-config", cfg, "-name", "x", "-expires", "5x"); !strings.Contains(errs, "-expires") {
		t.Errorf("bad expiry: %q", errs)
	}

	list, _ := mustRun(t, 0, "", "app-password", "list", "alice", "-config", cfg)
	if strings.Contains(list, pw) || strings.Contains(list, strings.TrimSpace(out2)) {
		t.Fatalf("list shows a password:\n%s", list)
	}
	if !regexp.MustCompile(`(?m)^phone +read-only +\d{4}-\S+ +- +- +\d{4}-\S+ +-$`).MatchString(list) ||
		!regexp.MustCompile(`(?m)^laptop +all, account work +\S+ +- +- +never +-$`).MatchString(list) {
		t.Errorf("list:\n%s", list)
	}

	out, _ = mustRun(t, 0, "", "app-password", "revoke", "alice", "phone", "-config", cfg)
	if !strings.Contains(out, "within a few seconds") {
		t.Errorf("revoke: %q", out)
	}
	if _, errs := mustRun(t, 1, "", "app-password", "revoke", "alice", "phone", "-config", cfg); !strings.Contains(errs, "no live app password") {
		t.Errorf("second revoke: %q", errs)
	}
	list, _ = mustRun(t, 0, "", "app-password", "list", "alice", "-config", cfg)
	if !regexp.MustCompile(`(?m)^phone +read-only .* \d{4}-\S+$`).MatchString(list) {
		t.Errorf("revoked not shown as revoked:\n%s", list)
	}
	// Listed as the upstream's user with one live app password: no store
	// row was made for them.
	if out, _ := mustRun(t, 0, "", "user", "list", "-config", cfg); !regexp.MustCompile(`(?m)^alice +upstream +no +no +no +1 +-$`).MatchString(out) {
		t.Errorf("user list:\n%s", out)
	}

	out, _ = mustRun(t, 0, "", "audit", "-config", cfg, "-n", "2")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^\d{4}-\S+ +alice +app_password_revoked +- +- +phone$`).MatchString(lines[1]) ||
		!regexp.MustCompile(`alice +app_password_added +- +- +laptop$`).MatchString(lines[2]) {
		t.Errorf("audit:\n%s", out)
	}
	if out, _ := mustRun(t, 0, "", "audit", "-config", cfg, "bob"); out != "" {
		t.Errorf("audit of bob: %q", out)
	}
}

func TestParseLifetime(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"90d": 90 * 24 * time.Hour, "12h": 12 * time.Hour, "30m": 30 * time.Minute, "1d12h": 36 * time.Hour,
	} {
		if got, err := parseLifetime(in); err != nil || got != want {
			t.Errorf("%s: %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "0d", "-1d", "d", "5x", "1.5d", "-3h", "0s", "99999999d"} {
		if got, err := parseLifetime(in); err == nil {
			t.Errorf("%q accepted as %v", in, got)
		}
	}
}

func TestAdminWrongKey(t *testing.T) {
	cfg, key := adminConfig(t, true)
	mustRun(t, 0, "pw\n", "user", "upstream-password", "alice", "-config", cfg)
	writeKey(t, key) // another key
	_, errs := mustRun(t, 1, "", "user", "list", "-config", cfg)
	if !strings.Contains(errs, "not the key") || !strings.Contains(errs, "[secrets] key") {
		t.Errorf("wrong key: %q", errs)
	}
	os.Chmod(key, 0o644)
	if _, errs := mustRun(t, 1, "", "audit", "-config", cfg); !strings.Contains(errs, "chmod 600") {
		t.Errorf("readable key: %q", errs)
	}
}

func TestAdminKeygenAndHelp(t *testing.T) {
	out, errs := mustRun(t, 0, "", "keygen")
	if _, err := auth.ParseKey(out); err != nil || !strings.Contains(errs, `key = "file:`) {
		t.Errorf("keygen: %q %v %q", out, err, errs)
	}
	path := filepath.Join(t.TempDir(), "k")
	mustRun(t, 0, "", "keygen", "-out", path)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if _, err := auth.LoadKey("file:" + path); err != nil {
		t.Fatal(err)
	}
	mustRun(t, 1, "", "keygen", "-out", path) // never overwritten

	for _, args := range [][]string{
		{"user", "add"}, {"user", "passwd"}, {"user", "list"}, {"user", "disable"}, {"user", "enable"},
		{"user", "delete"}, {"user", "upstream-password"}, {"user", "totp", "enroll"}, {"user", "totp", "remove"},
		{"app-password", "add"}, {"app-password", "list"}, {"app-password", "revoke"}, {"audit"}, {"keygen"},
	} {
		_, errs := mustRun(t, 0, "", append(args, "-h")...)
		if !strings.Contains(errs, "Usage: imapproxy "+strings.Join(args, " ")) || !strings.Contains(errs, "-config") && args[0] != "keygen" {
			t.Errorf("%v -h: %q", args, errs)
		}
	}
	for _, v := range []string{"user", "app-password", "user totp"} {
		args := strings.Fields(v)
		if _, errs := mustRun(t, 0, "", append(args, "-h")...); !strings.Contains(errs, "Commands:") {
			t.Errorf("%s -h: %q", v, errs)
		}
		mustRun(t, 2, "", args...)
		mustRun(t, 2, "", append(args, "nope")...)
	}
	mustRun(t, 2, "", "app-password", "revoke", "alice")
	mustRun(t, 2, "", "audit", "a", "b")
	if _, errs := mustRun(t, 1, "", "audit", "-config", "/nonexistent/config.toml"); !strings.Contains(errs, "/nonexistent/config.toml") {
		t.Errorf("missing config: %q", errs)
	}
}
