package proxy

// Real IMAP clients (python3 imaplib, curl, mbsync) through the proxy to a
// real Dovecot, compared with the same client talking to Dovecot directly.
// Each test is skipped when its client is not installed, unless
// IMAPPROXY_TEST_DOVECOT=1 makes it mandatory.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"imapproxy/config"
	"imapproxy/internal/dovecot"
)

// requireClient returns the path of a client program, skipping the test
// when it is missing (failing it when the real-server tests are mandatory).
func requireClient(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv(dovecot.EnvMandatory) == "1" {
		t.Fatalf("%s is not installed, and %s=1 makes the real-client tests mandatory", name, dovecot.EnvMandatory)
	}
	t.Skipf("%s is not installed; skipping (set %s=1 to make this a failure)", name, dovecot.EnvMandatory)
	return ""
}

// runClient runs a program with a timeout and returns its standard output;
// it fails the test with standard error when the program fails.
func runClient(t *testing.T, timeout time.Duration, env []string, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	shown := make([]string, len(args))
	for i, a := range args {
		shown[i] = a
		if strings.Contains(a, "\n") {
			shown[i] = "<script>"
		}
	}
	t.Logf("%s %s: %v", filepath.Base(name), strings.Join(shown, " "), time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("%s %q: %v (timeout %v)\nstderr:\n%s\nstdout:\n%s", name, shown, err, timeout, stderr.Bytes(), stdout.Bytes())
	}
	return stdout.Bytes()
}

// clientCerts writes the proxy's and Dovecot's certificates to files.
func clientCerts(t *testing.T, d *dovecot.Server) (proxyCA, dovecotCA string) {
	t.Helper()
	dir := t.TempDir()
	proxyCA, _, err := testPair.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	dovecotCA = filepath.Join(dir, "dovecot.pem")
	if err := os.WriteFile(dovecotCA, d.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return proxyCA, dovecotCA
}

func hostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	host, port, ok := strings.Cut(addr, ":")
	if !ok {
		t.Fatalf("address %q", addr)
	}
	return host, port
}

// imaplibScript logs in, fetches every message of INBOX and prints the
// message count and one SHA-256 per body, in UID order.
const imaplibScript = `
import hashlib, imaplib, ssl, sys
host, port, cafile, user, password = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
m = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx, timeout=30)
typ, _ = m.login(user, password)
assert typ == "OK", typ
typ, data = m.select("INBOX", readonly=True)
assert typ == "OK", (typ, data)
print("exists", int(data[0]))
typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
assert typ == "OK", (typ, data)
bodies = [part[1] for part in data if isinstance(part, tuple)]
print("fetched", len(bodies))
for b in bodies:
    print(hashlib.sha256(b).hexdigest())
typ, _ = m.logout()
assert typ == "BYE", typ
`

func TestClientPythonImaplib(t *testing.T) {
	python := requireClient(t, "python3")
	d := dovecot.StartT(t, dovecot.Options{})
	rng := rand.New(rand.NewPCG(21, 22))
	var msgs [][]byte
	for i := range 20 {
		if i%5 == 4 {
			msgs = append(msgs, binaryishMessage(rng, i, 50_000+rng.IntN(200_000)))
		} else {
			msgs = append(msgs, textMessage(i, "imaplib"))
		}
	}
	if err := d.Deliver("alice", "INBOX", msgs...); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, dovecotConfig(t, d, config.TLSImplicit, config.TLSImplicit))
	proxyCA, dovecotCA := clientCerts(t, d)

	want := fmt.Sprintf("exists %d\nfetched %d\n", len(msgs), len(msgs))
	for _, m := range msgs {
		sum := sha256.Sum256(crlf(m))
		want += hex.EncodeToString(sum[:]) + "\n"
	}
	host, port := hostPort(t, p.addr)
	viaProxy := string(runClient(t, time.Minute, nil, python, "-c", imaplibScript, host, port, proxyCA, "alice", "alicepw"))
	host, port = hostPort(t, d.TLSAddr)
	direct := string(runClient(t, time.Minute, nil, python, "-c", imaplibScript, host, port, dovecotCA, "alice", "alicepw"))
	if direct != want {
		t.Fatalf("imaplib directly from Dovecot:\n%s\nwant:\n%s", direct, want)
	}
	if viaProxy != direct {
		t.Fatalf("imaplib through the proxy:\n%s\ndirectly:\n%s", viaProxy, direct)
	}
}

func TestClientCurl(t *testing.T) {
	curl := requireClient(t, "curl")
	d := dovecot.StartT(t, dovecot.Options{})
	rng := rand.New(rand.NewPCG(31, 32))
	msgs := [][]byte{textMessage(1, "curl"), binaryishMessage(rng, 2, 300_000), textMessage(3, "curl")}
	if err := d.Deliver("alice", "INBOX", msgs...); err != nil {
		t.Fatal(err)
	}
	if err := d.Deliver("alice", "Work", textMessage(4, "curl work")); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, dovecotConfig(t, d, config.TLSImplicit, config.TLSImplicit))
	proxyCA, _ := clientCerts(t, d)

	base := "imaps://" + p.addr
	for uid, m := range msgs {
		got := runClient(t, time.Minute, nil, curl, "-sS", "--max-time", "30", "--cacert", proxyCA,
			"--user", "alice:alicepw", fmt.Sprintf("%s/INBOX;UID=%d", base, uid+1))
		if want := crlf(m); !bytes.Equal(got, want) {
			t.Errorf("curl UID %d through the proxy: %d bytes, want the %d bytes delivered", uid+1, len(got), len(want))
		}
	}
	got := runClient(t, time.Minute, nil, curl, "-sS", "--max-time", "30", "--cacert", proxyCA,
		"--user", "alice:alicepw", base+"/Work;UID=1")
	if want := crlf(textMessage(4, "curl work")); !bytes.Equal(got, want) {
		t.Errorf("curl Work;UID=1 through the proxy: %q, want %q", got, want)
	}
	list := string(runClient(t, time.Minute, nil, curl, "-sS", "--max-time", "30", "--cacert", proxyCA,
		"--user", "alice:alicepw", base+"/"))
	for _, name := range []string{`"INBOX"`, `"Work"`, `"Sent"`} {
		if !strings.Contains(list, name) && !strings.Contains(list, " "+strings.Trim(name, `"`)+"\r\n") {
			t.Errorf("curl LIST through the proxy lacks %s:\n%s", name, list)
		}
	}
}

// mbsyncrc pulls a whole IMAP account into a maildir. isync 1.4 (Debian 12)
// calls the TLS setting SSLType; 1.5 renamed it TLSType and keeps SSLType
// as an alias.
const mbsyncrc = `IMAPAccount acct
Host %s
Port %s
User alice
Pass alicepw
SSLType IMAPS
CertificateFile %s

IMAPStore far
Account acct

MaildirStore near
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel pull
Far :far:
Near :near:
Patterns *
Create Near
Sync Pull
SyncState *
`

// maildirBodies returns, per folder (relative to root), the sorted contents
// of its messages, with mbsync's X-TUID header removed.
func maildirBodies(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if e.Name() == "cur" {
				folder, err := filepath.Rel(root, filepath.Dir(path))
				if err != nil {
					return err
				}
				if _, ok := out[folder]; !ok {
					out[folder] = []string{}
				}
			}
			return nil
		}
		dir := filepath.Dir(path)
		if b := filepath.Base(dir); b != "cur" && b != "new" {
			return nil
		}
		folder, err := filepath.Rel(root, filepath.Dir(dir))
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var kept []string
		for _, l := range strings.SplitAfter(string(data), "\n") {
			if !strings.HasPrefix(l, "X-TUID: ") {
				kept = append(kept, l)
			}
		}
		out[folder] = append(out[folder], strings.Join(kept, ""))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range out {
		slices.Sort(v)
	}
	return out
}

func TestClientMbsync(t *testing.T) {
	mbsync := requireClient(t, "mbsync")
	version := runClient(t, 10*time.Second, nil, mbsync, "--version")
	t.Logf("%s", bytes.TrimSpace(version))
	d := dovecot.StartT(t, dovecot.Options{})

	rng := rand.New(rand.NewPCG(41, 42))
	want := map[string][]string{}
	for _, folder := range []string{"INBOX", "Work", "Lists/Dev"} {
		var msgs [][]byte
		for i := range 10 {
			var m []byte
			if i == 7 {
				m = binaryishMessage(rng, i, 80_000)
			} else {
				m = textMessage(i, "mbsync "+folder)
			}
			msgs = append(msgs, m)
			// Maildir files hold LF line ends.
			want[folder] = append(want[folder], string(bytes.ReplaceAll(m, []byte("\r\n"), []byte("\n"))))
		}
		if err := d.Deliver("alice", folder, msgs...); err != nil {
			t.Fatal(err)
		}
		slices.Sort(want[folder])
	}
	p := startProxy(t, dovecotConfig(t, d, config.TLSImplicit, config.TLSImplicit))
	proxyCA, dovecotCA := clientCerts(t, d)

	pull := func(name, addr, ca string) map[string][]string {
		dir := t.TempDir()
		maildir := filepath.Join(dir, "mail")
		if err := os.Mkdir(maildir, 0o700); err != nil {
			t.Fatal(err)
		}
		// isync 1.4 matches only DNS names in certificates, and both
		// certificates are valid for localhost.
		_, port := hostPort(t, addr)
		host := "localhost"
		rc := filepath.Join(dir, "mbsyncrc")
		if err := os.WriteFile(rc, []byte(fmt.Sprintf(mbsyncrc, host, port, ca, maildir, maildir)), 0o600); err != nil {
			t.Fatal(err)
		}
		runClient(t, 2*time.Minute, []string{"HOME=" + dir}, mbsync, "-c", rc, "-a")
		got := maildirBodies(t, maildir)
		t.Logf("mbsync %s: folders %v", name, slices.Sorted(maps.Keys(got)))
		return got
	}
	direct := pull("direct", d.TLSAddr, dovecotCA)
	viaProxy := pull("through the proxy", p.addr, proxyCA)

	for folder, bodies := range want {
		if !slices.Equal(direct[folder], bodies) {
			t.Errorf("mbsync directly: folder %s has %d messages that differ from the %d delivered", folder, len(direct[folder]), len(bodies))
		}
	}
	for _, folder := range []string{"Drafts", "Sent", "Trash", "Junk", "Archive"} {
		if _, ok := direct[folder]; !ok {
			t.Errorf("mbsync directly did not create the empty folder %s", folder)
		}
	}
	if !strings.Contains(p.logs.String(), "msg=login") {
		t.Errorf("the proxy logged no login; mbsync did not go through it")
	}
	if len(viaProxy) != len(direct) {
		t.Errorf("mbsync through the proxy got folders %v, directly %v", slices.Sorted(maps.Keys(viaProxy)), slices.Sorted(maps.Keys(direct)))
	}
	for folder, bodies := range direct {
		if !slices.Equal(viaProxy[folder], bodies) {
			t.Errorf("mbsync through the proxy: folder %s has %d messages, directly %d, or their contents differ",
				folder, len(viaProxy[folder]), len(bodies))
		}
	}
}
