package proxy

// Real IMAP clients (mbsync, python3 imaplib, curl) against a merged
// account over two real Dovecots, through the proxy's implicit-TLS front
// door. Skipped when Dovecot or the client is missing, unless
// IMAPPROXY_TEST_DOVECOT=1 makes them mandatory.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// mergedProxy starts two Dovecots (mergeDovecots) and a merge proxy over
// them, and returns the proxy and the INBOX messages delivered.
func mergedProxy(t *testing.T) (*mergeProxy, map[string][]byte) {
	t.Helper()
	work, home, inboxes := mergeDovecots(t)
	p := startMergeProxyAt(t, mergeDovecotConfig(t, work, home), filepath.Join(t.TempDir(), "state.db"))
	return p, inboxes
}

// maildirFiles returns the paths (relative to root) of every message file
// under root.
func maildirFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if b := filepath.Base(filepath.Dir(path)); !e.IsDir() && (b == "cur" || b == "new") {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func TestMergeClientMbsync(t *testing.T) {
	mbsync := requireClient(t, "mbsync")
	p, inboxes := mergedProxy(t)
	dir, maildir, rc := mbsyncSetup(t, p, mbsyncrc)
	sync := func() string {
		out := runClient(t, 2*time.Minute, []string{"HOME=" + dir}, mbsync, "-V", "-c", rc, "-a")
		return string(out)
	}
	first := sync()
	got := maildirBodies(t, maildir)
	t.Logf("mbsync: folders %v", slices.Sorted(maps.Keys(got)))

	// Maildir files hold LF line ends.
	var want []string
	for _, m := range inboxes {
		want = append(want, string(bytes.ReplaceAll(m, []byte("\r\n"), []byte("\n"))))
	}
	slices.Sort(want)
	if !slices.Equal(got["INBOX"], want) {
		t.Errorf("mbsync: the unified INBOX has %d messages, want the %d delivered, or their contents differ", len(got["INBOX"]), len(want))
	}
	if n := len(got["Work/INBOX"]) + len(got["Home/INBOX"]); n != len(want) {
		t.Errorf("mbsync: Work/INBOX and Home/INBOX hold %d messages, want %d", n, len(want))
	}
	for _, folder := range []string{"Work/Reports", "Home/Projects"} {
		if len(got[folder]) != 1+strings.Count(folder, "Projects") {
			t.Errorf("mbsync: %s has %d messages", folder, len(got[folder]))
		}
	}
	for _, prefix := range []string{"Work", "Home"} {
		for _, f := range []string{"Sent", "Drafts", "Trash", "Junk", "Archive"} {
			if _, ok := got[prefix+"/"+f]; !ok {
				t.Errorf("mbsync did not create the folder %s/%s", prefix, f)
			}
		}
	}
	if counts := mbsyncCounts(first); counts["INBOX"] != [2]int{0, len(want)} {
		t.Errorf("first mbsync run: INBOX near/far counts %v, want [0 %d]", counts["INBOX"], len(want))
	}

	// A second run transfers nothing: no new files, none renamed.
	before := maildirFiles(t, maildir)
	second := sync()
	after := maildirFiles(t, maildir)
	if !slices.Equal(before, after) {
		added, removed := difference(after, before), difference(before, after)
		t.Errorf("the second mbsync run changed the maildir: added %q, removed %q\n%s", added, removed, second)
	}
	// isync -V reports per box the messages each side holds before it
	// synchronizes: on the second run, the near side has them all.
	counts := mbsyncCounts(second)
	if len(counts) != 15 {
		t.Errorf("second mbsync run reported %d boxes: %v", len(counts), counts)
	}
	for box, n := range counts {
		if n[0] != n[1] {
			t.Errorf("second mbsync run: box %s near side holds %d messages, far side %d", box, n[0], n[1])
		}
	}
	if len(before) < 2*len(want) {
		t.Errorf("maildir holds %d files after mbsync, want at least %d", len(before), 2*len(want))
	}
}

// mbsyncCounts parses the output of mbsync -V: per box, the messages of
// the near and the far side before it synchronized.
func mbsyncCounts(out string) map[string][2]int {
	counts := map[string][2]int{}
	box := ""
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if name, ok := strings.CutPrefix(l, "Opening far side box "); ok {
			box = strings.TrimSuffix(name, "...")
			continue
		}
		var n int
		if _, err := fmt.Sscanf(l, "near side: %d messages", &n); err == nil {
			c := counts[box]
			c[0] = n
			counts[box] = c
		} else if _, err := fmt.Sscanf(l, "far side: %d messages", &n); err == nil {
			c := counts[box]
			c[1] = n
			counts[box] = c
		}
	}
	return counts
}

// difference returns the strings of a not in b.
func difference(a, b []string) []string {
	var out []string
	for _, s := range a {
		if !slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// mergedImaplibScript lists every folder, then fetches every message of
// the unified INBOX and of Home/Projects, printing the folders, the
// counts and one SHA-256 per body (sorted).
const mergedImaplibScript = `
import hashlib, imaplib, ssl, sys
host, port, cafile, user, password = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
m = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx, timeout=30)
typ, _ = m.login(user, password)
assert typ == "OK", typ
typ, data = m.list()
assert typ == "OK", (typ, data)
for line in sorted(d.decode() for d in data):
    print("list", line.rsplit(" ", 1)[1].strip('"'))
for box in ("INBOX", '"Home/Projects"'):
    typ, data = m.select(box, readonly=True)
    assert typ == "OK", (typ, data)
    print("exists", box, int(data[0]))
    typ, data = m.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert typ == "OK", (typ, data)
    for h in sorted(hashlib.sha256(p[1]).hexdigest() for p in data if isinstance(p, tuple)):
        print("sha", box, h)
typ, _ = m.logout()
assert typ == "BYE", typ
`

func TestMergeClientPythonImaplib(t *testing.T) {
	python := requireClient(t, "python3")
	p, inboxes := mergedProxy(t)
	proxyCA, _, err := testPair.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	host, port := hostPort(t, p.addr)
	out := string(runClient(t, time.Minute, nil, python, "-c", mergedImaplibScript, host, port, proxyCA, "alice", "alicepw"))

	var lists []string
	shas := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 2 && f[0] == "list":
			lists = append(lists, f[1])
		case len(f) == 3 && f[0] == "sha":
			shas[f[1]] = append(shas[f[1]], f[2])
		}
	}
	for _, want := range []string{"INBOX", "Work/INBOX", "Work/Sent", "Work/Reports", "Home/INBOX", "Home/Trash", "Home/Projects"} {
		if !slices.Contains(lists, want) {
			t.Errorf("imaplib LIST lacks %s: %q", want, lists)
		}
	}
	if !strings.Contains(out, fmt.Sprintf("exists INBOX %d\n", len(inboxes))) || !strings.Contains(out, "exists \"Home/Projects\" 2\n") {
		t.Errorf("imaplib counts:\n%s", out)
	}
	var want []string
	for _, m := range inboxes {
		sum := sha256.Sum256(m)
		want = append(want, hex.EncodeToString(sum[:]))
	}
	slices.Sort(want)
	if !slices.Equal(shas["INBOX"], want) {
		t.Errorf("imaplib read %d INBOX bodies, want the %d delivered, or they differ:\n%s", len(shas["INBOX"]), len(want), out)
	}
	var projects []string
	for _, i := range []int{300, 301} {
		sum := sha256.Sum256(crlf(textMessage(i, "merge projects")))
		projects = append(projects, hex.EncodeToString(sum[:]))
	}
	slices.Sort(projects)
	if !slices.Equal(shas[`"Home/Projects"`], projects) {
		t.Errorf("imaplib Home/Projects bodies %q, want %q", shas[`"Home/Projects"`], projects)
	}
}

func TestMergeClientCurl(t *testing.T) {
	curl := requireClient(t, "curl")
	p, inboxes := mergedProxy(t)
	proxyCA, _, err := testPair.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	// The UIDs, as the proxy gives them.
	c := dialMerged(t, p.addr, nil)
	uids := map[string]map[string]imap.UID{}
	for _, mb := range []string{"INBOX", "Home/Projects"} {
		if _, err := c.Select(mb, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			t.Fatal(err)
		}
		uids[mb] = map[string]imap.UID{}
		for id, m := range fetchAll(t, c) {
			uids[mb][id] = m.uid
		}
	}
	c.Logout().Wait()

	base := "imaps://" + p.addr
	get := func(path string) []byte {
		return runClient(t, time.Minute, nil, curl, "-sS", "--max-time", "30", "--cacert", proxyCA,
			"--user", "alice:alicepw", base+"/"+path)
	}
	n := 0
	for id, uid := range uids["INBOX"] {
		want, ok := inboxes[id]
		if !ok {
			t.Errorf("INBOX holds %s, which was not delivered", id)
			continue
		}
		// One message of each account, and the large one.
		if n >= 2 && !strings.Contains(id, "big") && !strings.Contains(id, "101") {
			continue
		}
		n++
		if got := get(fmt.Sprintf("INBOX;UID=%d", uid)); !bytes.Equal(got, want) {
			t.Errorf("curl INBOX;UID=%d (%s): %d bytes, want the %d delivered", uid, id, len(got), len(want))
		}
	}
	id := messageID(textMessage(301, "merge projects"))
	if got, want := get(fmt.Sprintf("Home/Projects;UID=%d", uids["Home/Projects"][id])), crlf(textMessage(301, "merge projects")); !bytes.Equal(got, want) {
		t.Errorf("curl Home/Projects;UID=%d: %q, want %q", uids["Home/Projects"][id], got, want)
	}
	list := string(get(""))
	for _, name := range []string{"INBOX", "Work/Sent", "Home/Projects"} {
		if !strings.Contains(list, `"`+name+`"`) && !strings.Contains(list, " "+name+"\r\n") {
			t.Errorf("curl LIST lacks %s:\n%s", name, list)
		}
	}
}
