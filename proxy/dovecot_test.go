package proxy

// Route mode against a real Dovecot 2.3 (internal/dovecot). These tests are
// skipped when Dovecot is not installed, and fail instead when
// IMAPPROXY_TEST_DOVECOT=1.

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	proxyproto "github.com/pires/go-proxyproto"

	"imapproxy/config"
	"imapproxy/internal/dovecot"
)

// dovecotConfig returns a proxy config with one listener of the given mode
// routing every user to the Dovecot instance d, reached with upMode
// (implicit TLS on d.TLSAddr, STARTTLS on d.PlainAddr), with SendClientIP.
func dovecotConfig(t testing.TB, d *dovecot.Server, listen, upMode config.TLSMode) *config.Config {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "dovecot-ca.pem")
	if err := os.WriteFile(caFile, d.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := d.TLSAddr
	if upMode != config.TLSImplicit {
		addr = d.PlainAddr
	}
	cfg := baseConfig(listen, addr)
	cfg.Upstreams[0] = config.Upstream{
		Name: "dovecot", Address: addr, TLS: upMode, CAFile: caFile,
		SendClientIP:   true,
		ConnectTimeout: config.Duration(10 * time.Second),
		CommandTimeout: config.Duration(20 * time.Second),
	}
	cfg.Routes[0].Upstream = "dovecot"
	return cfg
}

// dialDovecot opens a raw implicit-TLS connection straight to Dovecot and
// reads its greeting.
func dialDovecot(t testing.TB, d *dovecot.Server) *textClient {
	t.Helper()
	conn, err := tls.Dial("tcp", d.TLSAddr, d.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c := &textClient{t: t, conn: conn, br: bufio.NewReader(conn)}
	if l := c.line(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("dovecot greeting: %q", l)
	}
	return c
}

// dialProxyTLS opens a raw implicit-TLS connection to the proxy and reads
// its greeting.
func dialProxyTLS(t testing.TB, p *testProxy) *textClient {
	t.Helper()
	c := dialText(t, p.addr, true)
	c.conn.SetDeadline(time.Now().Add(60 * time.Second))
	if l := c.line(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("proxy greeting: %q", l)
	}
	return c
}

// mustOK sends one command and reads through its tagged reply, which must be
// OK. Responses must not contain literals.
func mustOK(c *textClient, tag, command string) []string {
	c.t.Helper()
	c.send(tag + " " + command + "\r\n")
	lines := c.until(tag + " ")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, tag+" OK") {
		c.t.Fatalf("%s: %q", command, lines)
	}
	return lines
}

// readResponse reads the raw bytes of every response up to and including
// the tagged one, following literals, and returns them together with the
// literals' payloads in order.
func readResponse(c *textClient, tag string) (raw []byte, literals [][]byte) {
	c.t.Helper()
	continuation := false
	for {
		l, err := c.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			raw = append(raw, l...)
			continuation = true
			continue
		}
		if err != nil {
			c.t.Fatalf("read response to %s: %v", tag, err)
		}
		raw = append(raw, l...)
		if !continuation && bytes.HasPrefix(l, []byte(tag+" ")) {
			return raw, literals
		}
		n, _, _, ok := parseLiteralMarker(bytes.TrimRight(l, "\r\n"))
		continuation = ok
		if !ok {
			continue
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(c.br, buf); err != nil {
			c.t.Fatalf("read literal of %d bytes: %v", n, err)
		}
		raw = append(raw, buf...)
		literals = append(literals, buf)
	}
}

// dovecotTiming matches the timing Dovecot appends to its OK texts.
var dovecotTiming = regexp.MustCompile(` ?\([0-9.]+(?: \+ [0-9.]+)* secs\)`)

// stripTiming removes Dovecot's timing from the last line of raw.
func stripTiming(raw []byte) []byte {
	i := bytes.LastIndex(bytes.TrimSuffix(raw, []byte("\r\n")), []byte("\r\n"))
	head, last := raw[:i+2], raw[i+2:]
	return append(bytes.Clone(head), dovecotTiming.ReplaceAll(last, nil)...)
}

// postLoginCaps returns the capabilities of a tagged "OK [CAPABILITY ...]".
func postLoginCaps(t testing.TB, line string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(line, "[CAPABILITY ")
	caps, _, ok2 := strings.Cut(rest, "]")
	if !ok || !ok2 {
		t.Fatalf("no CAPABILITY code in %q", line)
	}
	return strings.Fields(caps)
}

func hasCapability(caps []string, name string) bool {
	return slices.ContainsFunc(caps, func(c string) bool { return strings.EqualFold(c, name) })
}

// crlf turns LF line ends into CRLF, as Dovecot serves maildir files.
func crlf(b []byte) []byte {
	return bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
}

// textMessage is a small plain-text message.
func textMessage(i int, subject string) []byte {
	return []byte(fmt.Sprintf("From: sender%d@example.org\r\nTo: alice@example.com\r\n"+
		"Subject: %s\r\nMessage-ID: <msg%d.%s@example.org>\r\nDate: Mon, 2 Jan 2006 15:04:05 +0000\r\n\r\n"+
		"Body of message %d in %s.\r\nSecond line.\r\n", i, subject, i, strings.ReplaceAll(subject, " ", "-"), i, subject))
}

// binaryishMessage is a message of about size bytes with 8-bit content,
// long lines, and lines that look like IMAP responses and literal markers.
func binaryishMessage(rng *rand.Rand, i, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: sender%d@example.org\nTo: alice@example.com\nSubject: blob %d\n"+
		"Message-ID: <blob%d@example.org>\nMIME-Version: 1.0\n"+
		"Content-Type: application/octet-stream\nContent-Transfer-Encoding: 8bit\n\n", i, i, i)
	tricks := []string{"+ Ready for more", "f OK fake completion", "* 3 EXISTS", "a LOGOUT", "x APPEND INBOX {12}", "{5}", "* BYE not really"}
	for b.Len() < size {
		switch rng.IntN(12) {
		case 0:
			b.WriteString(tricks[rng.IntN(len(tricks))])
		case 1:
			// A long line.
			n := 1000 + rng.IntN(30000)
			for range n {
				b.WriteByte(byte(0x20 + rng.IntN(0x5f)))
			}
		default:
			n := rng.IntN(200)
			for range n {
				c := byte(rng.IntN(256))
				if c == 0 || c == '\r' || c == '\n' {
					c = 0xe9
				}
				b.WriteByte(c)
			}
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// TestDovecotLoginMatrix logs in through STARTTLS and implicit-TLS listeners
// to Dovecot over implicit TLS and STARTTLS, and checks the capabilities the
// client is told after login.
func TestDovecotLoginMatrix(t *testing.T) {
	d := dovecot.StartT(t, dovecot.Options{})
	if err := d.Deliver("alice", "INBOX", textMessage(1, "matrix")); err != nil {
		t.Fatal(err)
	}

	// Dovecot's own post-login capabilities, for comparison.
	direct := dialDovecot(t, d)
	directLines := mustOK(direct, "a", "LOGIN alice alicepw")
	directCaps := postLoginCaps(t, directLines[len(directLines)-1])
	mustOK(direct, "z", "LOGOUT")
	var wantCaps []string
	for _, c := range directCaps {
		u := strings.ToUpper(c)
		if u == "STARTTLS" || u == "LOGINDISABLED" || u == "SASL-IR" || u == "UNAUTHENTICATE" || strings.HasPrefix(u, "AUTH=") {
			continue
		}
		wantCaps = append(wantCaps, c)
	}
	slices.Sort(wantCaps)

	for _, listen := range []config.TLSMode{config.TLSStartTLS, config.TLSImplicit} {
		for _, up := range []config.TLSMode{config.TLSImplicit, config.TLSStartTLS} {
			t.Run(fmt.Sprintf("listen=%s/upstream=%s", listen, up), func(t *testing.T) {
				p := startProxy(t, dovecotConfig(t, d, listen, up))

				// Raw: the tagged OK of LOGIN.
				c := dialText(t, p.addr, listen == config.TLSImplicit)
				c.line()
				if listen == config.TLSStartTLS {
					mustOK(c, "s", "STARTTLS")
					c.startTLS()
				}
				lines := mustOK(c, "a", "LOGIN alice alicepw")
				caps := postLoginCaps(t, lines[len(lines)-1])
				for _, want := range []string{"CONDSTORE", "QRESYNC", "IDLE", "MOVE", "LITERAL+", "IMAP4rev1"} {
					if !hasCapability(caps, want) {
						t.Errorf("post-login caps lack %s: %q", want, caps)
					}
				}
				for _, c := range caps {
					u := strings.ToUpper(c)
					if u == "STARTTLS" || u == "SASL-IR" || u == "LOGINDISABLED" || u == "UNAUTHENTICATE" || strings.HasPrefix(u, "AUTH=") {
						t.Errorf("post-login caps contain %s: %q", c, caps)
					}
				}
				got := slices.Clone(caps)
				slices.Sort(got)
				if !slices.Equal(got, wantCaps) {
					t.Errorf("post-login caps through the proxy\n %q\ndiffer from Dovecot's minus the filtered ones\n %q", got, wantCaps)
				}
				lines = mustOK(c, "b", "SELECT INBOX")
				if !slices.Contains(lines, "* 1 EXISTS") {
					t.Errorf("SELECT INBOX: %q", lines)
				}
				mustOK(c, "z", "LOGOUT")

				// go-imap's client.
				tlsConfig := &tls.Config{RootCAs: testPair.CertPool(), ServerName: "127.0.0.1"}
				var ic *imapclient.Client
				var err error
				if listen == config.TLSImplicit {
					ic, err = imapclient.DialTLS(p.addr, &imapclient.Options{TLSConfig: tlsConfig})
				} else {
					ic, err = imapclient.DialStartTLS(p.addr, &imapclient.Options{TLSConfig: tlsConfig})
				}
				if err != nil {
					t.Fatal(err)
				}
				defer ic.Close()
				if err := ic.Login("alice", "alicepw").Wait(); err != nil {
					t.Fatalf("imapclient login: %v", err)
				}
				sel, err := ic.Select("INBOX", nil).Wait()
				if err != nil {
					t.Fatal(err)
				}
				if sel.NumMessages != 1 {
					t.Errorf("NumMessages = %d, want 1", sel.NumMessages)
				}
				msgs, err := ic.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true, UID: true}).Collect()
				if err != nil {
					t.Fatal(err)
				}
				if len(msgs) != 1 || msgs[0].Envelope == nil || msgs[0].Envelope.Subject != "matrix" || msgs[0].UID != 1 {
					t.Errorf("fetch: %+v", msgs)
				}
				if err := ic.Logout().Wait(); err != nil {
					t.Errorf("logout: %v", err)
				}
			})
		}
	}

	// Both upstream variants logged in over TLS: every login Dovecot saw
	// (ours direct, 2 × 4 through the proxy) says so.
	logData, err := os.ReadFile(d.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	logins := regexp.MustCompile(`imap-login: Info: Login: user=<alice>.*`).FindAll(logData, -1)
	if len(logins) != 9 {
		t.Errorf("Dovecot logged %d logins of alice, want 9:\n%s", len(logins), logins)
	}
	for _, l := range logins {
		if !bytes.Contains(l, []byte(", TLS")) {
			t.Errorf("login without TLS at Dovecot: %s", l)
		}
	}
}

// TestDovecotFetchByteIdentical checks that a large UID FETCH BODY.PEEK[]
// arrives through the proxy byte for byte as Dovecot sends it directly.
func TestDovecotFetchByteIdentical(t *testing.T) {
	d := dovecot.StartT(t, dovecot.Options{})
	rng := rand.New(rand.NewPCG(7, 11))
	var msgs [][]byte
	for i := range 50 {
		size := 200 + rng.IntN(20000)
		switch i {
		case 3, 17:
			size = 1<<20 + rng.IntN(1<<20)
		case 40:
			size = 2<<20 - 1000
		case 9:
			size = 100
		}
		msgs = append(msgs, binaryishMessage(rng, i, size))
	}
	if err := d.Deliver("alice", "INBOX", msgs...); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, dovecotConfig(t, d, config.TLSImplicit, config.TLSImplicit))

	fetch := func(c *textClient) ([]byte, [][]byte, time.Duration) {
		mustOK(c, "a", "LOGIN alice alicepw")
		if lines := mustOK(c, "s", "SELECT INBOX"); !slices.Contains(lines, "* 50 EXISTS") {
			t.Fatalf("SELECT: %q", lines)
		}
		start := time.Now()
		c.send("f UID FETCH 1:* BODY.PEEK[]\r\n")
		raw, lits := readResponse(c, "f")
		el := time.Since(start)
		mustOK(c, "z", "LOGOUT")
		return raw, lits, el
	}
	directRaw, directLits, directTime := fetch(dialDovecot(t, d))
	proxyRaw, proxyLits, proxyTime := fetch(dialProxyTLS(t, p))
	t.Logf("UID FETCH 1:* BODY.PEEK[] of %d bytes: direct %v, through the proxy %v", len(directRaw), directTime, proxyTime)

	if len(directLits) != len(msgs) {
		t.Fatalf("direct: %d literals, want %d", len(directLits), len(msgs))
	}
	for i, m := range msgs {
		if !bytes.Equal(directLits[i], crlf(m)) {
			t.Fatalf("direct: body %d (%d bytes) differs from the delivered message (%d bytes)", i+1, len(directLits[i]), len(crlf(m)))
		}
	}
	if !bytes.HasSuffix(directRaw, []byte("\r\n")) || !bytes.HasPrefix(directRaw[bytes.LastIndex(directRaw[:len(directRaw)-2], []byte("\r\n"))+2:], []byte("f OK")) {
		t.Fatalf("direct: no tagged OK at the end")
	}
	a, b := stripTiming(directRaw), stripTiming(proxyRaw)
	if !bytes.Equal(a, b) {
		i := 0
		for i < len(a) && i < len(b) && a[i] == b[i] {
			i++
		}
		t.Fatalf("through the proxy %d bytes, direct %d; first difference at byte %d: proxy %q, direct %q",
			len(b), len(a), i, b[max(0, i-40):min(len(b), i+40)], a[max(0, i-40):min(len(a), i+40)])
	}
	if len(proxyLits) != len(msgs) {
		t.Fatalf("proxy: %d literals", len(proxyLits))
	}

	// A client that goes away in the middle of the FETCH: the proxy ends
	// the upstream session too.
	c := dialProxyTLS(t, p)
	mustOK(c, "a", "LOGIN bob bobpw")
	if err := d.Deliver("bob", "INBOX", msgs[3], msgs[17], msgs[40]); err != nil {
		t.Fatal(err)
	}
	mustOK(c, "s", "SELECT INBOX")
	c.send("f UID FETCH 1:* BODY.PEEK[]\r\n")
	if _, err := io.ReadFull(c.br, make([]byte, 100_000)); err != nil {
		t.Fatal(err)
	}
	bobRe := regexp.MustCompile(`(?m)^bob\s`)
	if who, err := d.Who(); err != nil || !bobRe.MatchString(who) {
		t.Fatalf("bob is not logged in at Dovecot during the FETCH: %v\n%s", err, who)
	}
	c.conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		who, err := d.Who()
		if err != nil {
			t.Fatal(err)
		}
		if !bobRe.MatchString(who) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's upstream session outlived the client by 5 s:\n%s", who)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDovecotCondstoreQresync checks that CONDSTORE and QRESYNC work end to
// end through the proxy.
func TestDovecotCondstoreQresync(t *testing.T) {
	d := dovecot.StartT(t, dovecot.Options{})
	var msgs [][]byte
	for i := range 5 {
		msgs = append(msgs, textMessage(i+1, "condstore"))
	}
	if err := d.Deliver("alice", "INBOX", msgs...); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, dovecotConfig(t, d, config.TLSImplicit, config.TLSImplicit))
	c := dialProxyTLS(t, p)
	mustOK(c, "a", "LOGIN alice alicepw")
	if lines := mustOK(c, "b", "ENABLE QRESYNC"); !slices.ContainsFunc(lines, func(l string) bool {
		return strings.HasPrefix(l, "* ENABLED") && strings.Contains(l, "QRESYNC")
	}) {
		t.Fatalf("ENABLE QRESYNC: %q", lines)
	}
	lines := mustOK(c, "c", "SELECT INBOX (CONDSTORE)")
	modseqRe := regexp.MustCompile(`\[HIGHESTMODSEQ (\d+)\]`)
	uidvRe := regexp.MustCompile(`\[UIDVALIDITY (\d+)\]`)
	var highest, uidvalidity string
	for _, l := range lines {
		if m := modseqRe.FindStringSubmatch(l); m != nil {
			highest = m[1]
		}
		if m := uidvRe.FindStringSubmatch(l); m != nil {
			uidvalidity = m[1]
		}
	}
	if highest == "" || uidvalidity == "" {
		t.Fatalf("SELECT (CONDSTORE) lacks HIGHESTMODSEQ or UIDVALIDITY: %q", lines)
	}
	h0, _ := strconv.ParseUint(highest, 10, 64)

	lines = mustOK(c, "d", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)")
	fetches := 0
	for _, l := range lines {
		if strings.Contains(l, " FETCH (") {
			fetches++
			if !strings.Contains(l, "MODSEQ (") || !strings.Contains(l, "UID ") {
				t.Errorf("FETCH without MODSEQ or UID: %q", l)
			}
		}
	}
	if fetches != 5 {
		t.Errorf("CHANGEDSINCE 1 returned %d messages, want 5: %q", fetches, lines)
	}

	// A store with the current modseq succeeds and raises it.
	lines = mustOK(c, "e", fmt.Sprintf(`UID STORE 2 +FLAGS (\Flagged) (UNCHANGEDSINCE %d)`, h0))
	storeRe := regexp.MustCompile(`^\* 2 FETCH \(.*MODSEQ \((\d+)\)`)
	var m2 uint64
	for _, l := range lines {
		if m := storeRe.FindStringSubmatch(l); m != nil {
			m2, _ = strconv.ParseUint(m[1], 10, 64)
		}
	}
	if m2 <= h0 {
		t.Fatalf("STORE UNCHANGEDSINCE %d: no higher MODSEQ in %q", h0, lines)
	}
	// Another client changes message 3 directly. (Dovecot 2.3.19 does not
	// answer a stale UNCHANGEDSINCE with MODIFIED even directly, so that is
	// not checked here.)
	other := dialDovecot(t, d)
	mustOK(other, "a", "LOGIN alice alicepw")
	mustOK(other, "b", "SELECT INBOX")
	mustOK(other, "c", `UID STORE 3 +FLAGS.SILENT (\Answered)`)
	mustOK(other, "z", "LOGOUT")
	// Exactly messages 2 and 3 changed since h0.
	lines = mustOK(c, "g", fmt.Sprintf("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)", h0))
	// (Dovecot may add an unsolicited FETCH of message 3.)
	changed := map[string]string{}
	for _, l := range lines[:len(lines)-1] {
		num, rest, _ := strings.Cut(strings.TrimPrefix(l, "* "), " FETCH ")
		changed[num] += rest
	}
	if len(changed) != 2 || !strings.Contains(changed["2"], `\Flagged`) || !strings.Contains(changed["3"], `\Answered`) {
		t.Errorf("CHANGEDSINCE %d: %q", h0, lines)
	}
	// Expunge message 4, then resynchronize with QRESYNC from h0.
	mustOK(c, "h", `UID STORE 4 +FLAGS.SILENT (\Deleted)`)
	lines = mustOK(c, "i", "UID EXPUNGE 4")
	if !slices.Contains(lines, "* VANISHED 4") {
		t.Errorf("UID EXPUNGE with QRESYNC enabled: %q", lines)
	}
	mustOK(c, "j", "UNSELECT")
	lines = mustOK(c, "k", fmt.Sprintf("SELECT INBOX (QRESYNC (%s %d))", uidvalidity, h0))
	if !slices.Contains(lines, "* VANISHED (EARLIER) 4") {
		t.Errorf("SELECT (QRESYNC) lacks VANISHED (EARLIER) 4: %q", lines)
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "* 2 FETCH") && strings.Contains(l, "MODSEQ") }) {
		t.Errorf("SELECT (QRESYNC) lacks the FETCH of message 2: %q", lines)
	}
	mustOK(c, "z", "LOGOUT")
}

// TestDovecotIdle checks that IDLE through the proxy reports a message
// another client appends directly.
func TestDovecotIdle(t *testing.T) {
	d := dovecot.StartT(t, dovecot.Options{})
	if err := d.Deliver("alice", "INBOX", textMessage(1, "idle")); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, dovecotConfig(t, d, config.TLSImplicit, config.TLSImplicit))
	a := dialProxyTLS(t, p)
	mustOK(a, "a", "LOGIN alice alicepw")
	if lines := mustOK(a, "b", "SELECT INBOX"); !slices.Contains(lines, "* 1 EXISTS") {
		t.Fatalf("SELECT: %q", lines)
	}
	a.send("c IDLE\r\n")
	if l := a.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}

	b := dialDovecot(t, d)
	mustOK(b, "a", "LOGIN alice alicepw")
	msg := textMessage(2, "idle")
	b.send(fmt.Sprintf("b APPEND INBOX {%d+}\r\n%s\r\n", len(msg), msg))
	if lines := b.until("b "); !strings.HasPrefix(lines[len(lines)-1], "b OK") {
		t.Fatalf("direct APPEND: %q", lines)
	}
	appended := time.Now()

	a.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		l, err := a.br.ReadString('\n')
		if err != nil {
			t.Fatalf("no EXISTS within 5 s of the APPEND: %v", err)
		}
		if strings.TrimRight(l, "\r\n") == "* 2 EXISTS" {
			break
		}
		if !strings.HasPrefix(l, "* ") {
			t.Fatalf("during IDLE: %q", l)
		}
	}
	t.Logf("EXISTS %v after the APPEND", time.Since(appended))
	a.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	a.send("DONE\r\n")
	if lines := a.until("c "); !strings.HasPrefix(lines[len(lines)-1], "c OK") {
		t.Fatalf("after DONE: %q", lines)
	}
	// The session goes on.
	lines := mustOK(a, "d", "UID FETCH 2 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
	if len(lines) < 2 {
		t.Fatalf("FETCH after IDLE: %q", lines)
	}
	mustOK(a, "z", "LOGOUT")
	mustOK(b, "z", "LOGOUT")
}

// TestDovecotClientIP checks that Dovecot learns the client's address:
// directly the proxy's peer, and through a PROXY protocol header the address
// the balancer reports.
func TestDovecotClientIP(t *testing.T) {
	d := dovecot.StartT(t, dovecot.Options{})
	cfg := dovecotConfig(t, d, config.TLSImplicit, config.TLSImplicit)
	cfg.Listen[0].ProxyProtocol = true
	cfg.Listen[0].TrustedNets = mustPrefixes(t, "127.0.0.0/8")
	p := startProxy(t, cfg)

	raw, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	header := &proxyproto.Header{
		Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
		SourceAddr:      &net.TCPAddr{IP: net.ParseIP("203.0.113.77"), Port: 41234},
		DestinationAddr: &net.TCPAddr{IP: net.ParseIP("198.51.100.4"), Port: 993},
	}
	if _, err := header.WriteTo(raw); err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, &tls.Config{RootCAs: testPair.CertPool(), ServerName: "127.0.0.1"})
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	c := &textClient{t: t, conn: tc, br: bufio.NewReader(tc)}
	if l := c.line(); !strings.HasPrefix(l, "* OK") {
		t.Fatalf("greeting: %q", l)
	}
	mustOK(c, "a", "LOGIN bob bobpw")

	who, err := d.Who()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^bob\s.*203\.0\.113\.77`).MatchString(who) {
		t.Errorf("doveadm who does not show bob from 203.0.113.77:\n%s", who)
	}
	logData, err := os.ReadFile(d.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	login := regexp.MustCompile(`imap-login: Info: Login: user=<bob>.*`).Find(logData)
	if login == nil || !bytes.Contains(login, []byte("rip=203.0.113.77, rport=41234")) {
		t.Errorf("Dovecot's login line for bob lacks rip=203.0.113.77, rport=41234: %q", login)
	}
	if login != nil && !bytes.Contains(login, []byte("lip=198.51.100.4")) {
		t.Errorf("Dovecot's login line for bob lacks lip=198.51.100.4 (x-connected-ip): %q", login)
	}
	mustOK(c, "z", "LOGOUT")
}

// TestDovecotAppendAndAuthFailure checks an APPEND with a synchronizing
// literal through the guard's LITERAL+ rewrite, a refused APPEND whose
// payload looks like commands, and a wrong password.
func TestDovecotAppendAndAuthFailure(t *testing.T) {
	d := dovecot.StartT(t, dovecot.Options{})
	p := startProxy(t, dovecotConfig(t, d, config.TLSImplicit, config.TLSImplicit))
	c := dialProxyTLS(t, p)
	mustOK(c, "a", "LOGIN alice alicepw")

	var body bytes.Buffer
	body.WriteString("From: a@example.org\r\nSubject: =?utf-8?q?append?=\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	rng := rand.New(rand.NewPCG(3, 5))
	for body.Len() < 300_000 {
		n := rng.IntN(300)
		for range n {
			ch := byte(0x20 + rng.IntN(0xe0))
			if ch == 0x7f {
				ch = 0xff
			}
			body.WriteByte(ch)
		}
		body.WriteString("\r\n")
	}
	body.WriteString("b NOOP\r\n+ OK\r\n")
	msg := body.Bytes()

	c.send(fmt.Sprintf("b APPEND INBOX (\\Seen) {%d}\r\n", len(msg)))
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND continuation: %q", l)
	}
	c.send(string(msg) + "\r\n")
	lines := c.until("b ")
	m := regexp.MustCompile(`^b OK \[APPENDUID (\d+) (\d+)\]`).FindStringSubmatch(lines[len(lines)-1])
	if m == nil {
		t.Fatalf("APPEND: %q", lines)
	}
	mustOK(c, "c", "SELECT INBOX")
	c.send("d UID FETCH " + m[2] + " BODY.PEEK[]\r\n")
	_, lits := readResponse(c, "d")
	if len(lits) != 1 || !bytes.Equal(lits[0], msg) {
		got := 0
		if len(lits) == 1 {
			got = len(lits[0])
		}
		t.Fatalf("stored message (%d literals, %d bytes) differs from the %d bytes sent", len(lits), got, len(msg))
	}

	// A refused APPEND (no such mailbox) with a synchronizing literal: the
	// payload, which looks like commands, must not run as commands.
	trap := "e LOGOUT\r\n"
	c.send(fmt.Sprintf("e APPEND NoSuchBox {%d}\r\n", len(trap)))
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND continuation: %q", l)
	}
	c.send(trap + "\r\n")
	lines = c.until("e ")
	if !strings.HasPrefix(lines[len(lines)-1], "e NO [TRYCREATE]") {
		t.Errorf("APPEND to a missing mailbox: %q", lines)
	}
	if lines := mustOK(c, "f", "NOOP"); len(lines) != 1 {
		t.Errorf("after the refused APPEND: %q", lines)
	}
	mustOK(c, "z", "LOGOUT")

	// A wrong password, checked by Dovecot.
	c2 := dialProxyTLS(t, p)
	start := time.Now()
	c2.send("a LOGIN alice wrongpw\r\n")
	if l := c2.line(); !strings.HasPrefix(l, "a NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("wrong password: %q", l)
	}
	t.Logf("wrong password refused after %v", time.Since(start))
	c2.send("b LOGOUT\r\n")
	c2.until("b OK")
}

// TestDovecotGuard checks that a second LOGIN or AUTHENTICATE after login
// is refused by the proxy and the session keeps working.
func TestDovecotGuard(t *testing.T) {
	d := dovecot.StartT(t, dovecot.Options{})
	if err := d.Deliver("alice", "INBOX", textMessage(1, "guard")); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, dovecotConfig(t, d, config.TLSImplicit, config.TLSImplicit))
	c := dialProxyTLS(t, p)
	mustOK(c, "a", "LOGIN alice alicepw")
	mustOK(c, "b", "SELECT INBOX")

	refused := func(tag, cmd string) {
		t.Helper()
		c.send(cmd)
		if l := c.line(); !strings.HasPrefix(l, tag+" BAD ") {
			t.Errorf("%q: %q, want %s BAD", cmd, l, tag)
		}
	}
	refused("c", "c LOGIN bob bobpw\r\n")
	refused("d", "d AUTHENTICATE PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00bob\x00bobpw"))+"\r\n")
	refused("e", "e LOGIN {3}\r\n") // the client sends no payload after a BAD
	refused("f", "f LOGIN {3+}\r\nbob {5+}\r\nbobpw\r\n")
	refused("g", "g UNAUTHENTICATE\r\n")

	// Still alice, still selected, still working.
	lines := mustOK(c, "h", "UID FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "Subject: guard") }) {
		t.Errorf("FETCH after the refused commands: %q", lines)
	}
	mustOK(c, "i", "NOOP")
	who, err := d.Who()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(who, "bob") {
		t.Errorf("bob is logged in at Dovecot:\n%s", who)
	}
	mustOK(c, "z", "LOGOUT")
	if lines := c.expectClosed(); len(lines) != 0 {
		t.Errorf("after LOGOUT: %q", lines)
	}
}

// TestDovecotPipelinedAndLiterals checks commands pipelined behind LOGIN,
// a MULTIAPPEND with two synchronizing literals, and a SEARCH with a
// literal, each literal answered by exactly one continuation request.
func TestDovecotPipelinedAndLiterals(t *testing.T) {
	d := dovecot.StartT(t, dovecot.Options{})
	if err := d.Deliver("alice", "INBOX", textMessage(1, "first")); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, dovecotConfig(t, d, config.TLSImplicit, config.TLSImplicit))
	c := dialProxyTLS(t, p)
	c.send("a LOGIN alice alicepw\r\nb SELECT INBOX\r\nc NOOP\r\n")
	if l := c.line(); !strings.HasPrefix(l, "a OK [CAPABILITY ") {
		t.Fatalf("LOGIN: %q", l)
	}
	if lines := c.until("b "); !strings.HasPrefix(lines[len(lines)-1], "b OK") || !slices.Contains(lines, "* 1 EXISTS") {
		t.Fatalf("SELECT pipelined after LOGIN: %q", lines)
	}
	if lines := c.until("c "); !strings.HasPrefix(lines[len(lines)-1], "c OK") {
		t.Fatalf("NOOP pipelined after LOGIN: %q", lines)
	}

	m1, m2 := textMessage(2, "multi one"), textMessage(3, "multi two")
	c.send(fmt.Sprintf("d APPEND INBOX {%d}\r\n", len(m1)))
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("first continuation: %q", l)
	}
	c.send(fmt.Sprintf("%s {%d}\r\n", m1, len(m2)))
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("second continuation: %q", l)
	}
	c.send(string(m2) + "\r\n")
	if lines := c.until("d "); !strings.HasPrefix(lines[len(lines)-1], "d OK [APPENDUID ") || !strings.Contains(lines[len(lines)-1], " 2:3]") {
		t.Fatalf("MULTIAPPEND: %q", lines)
	}
	c.send("e UID SEARCH CHARSET UTF-8 SUBJECT {5}\r\n")
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("SEARCH continuation: %q", l)
	}
	c.send("multi\r\n")
	if lines := c.until("e "); !strings.HasPrefix(lines[len(lines)-1], "e OK") || !slices.Contains(lines, "* SEARCH 2 3") {
		t.Fatalf("SEARCH with a literal: %q", lines)
	}
	c.send("f UID FETCH 2:3 BODY.PEEK[]\r\n")
	if _, lits := readResponse(c, "f"); len(lits) != 2 || !bytes.Equal(lits[0], m1) || !bytes.Equal(lits[1], m2) {
		t.Fatalf("appended messages differ: %q", lits)
	}
	mustOK(c, "z", "LOGOUT")
}

// TestDovecotCompress checks COMPRESS=DEFLATE through the proxy: Dovecot
// without UNAUTHENTICATE offers it, the proxy passes it, and the deflated
// streams flow both ways.
func TestDovecotCompress(t *testing.T) {
	d := dovecot.StartT(t, dovecot.Options{ExtraConfig: "mail_plugins = $mail_plugins zlib\n" +
		"protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n"})
	msg := textMessage(1, "deflate")
	if err := d.Deliver("alice", "INBOX", msg); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, dovecotConfig(t, d, config.TLSImplicit, config.TLSImplicit))
	c := dialProxyTLS(t, p)
	lines := mustOK(c, "a", "LOGIN alice alicepw")
	if caps := postLoginCaps(t, lines[len(lines)-1]); !hasCapability(caps, "COMPRESS=DEFLATE") {
		t.Fatalf("COMPRESS=DEFLATE not passed on: %q", caps)
	}
	mustOK(c, "b", "COMPRESS DEFLATE")

	zw, err := flate.NewWriter(c.conn, flate.DefaultCompression)
	if err != nil {
		t.Fatal(err)
	}
	zr := flate.NewReader(c.br)
	defer zr.Close()
	zc := &textClient{t: t, conn: c.conn, br: bufio.NewReader(zr)}
	send := func(s string) {
		t.Helper()
		if _, err := io.WriteString(zw, s); err != nil {
			t.Fatal(err)
		}
		if err := zw.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	send("c SELECT INBOX\r\n")
	if lines := zc.until("c "); !strings.HasPrefix(lines[len(lines)-1], "c OK") || !slices.Contains(lines, "* 1 EXISTS") {
		t.Fatalf("SELECT after COMPRESS: %q", lines)
	}
	send("d UID FETCH 1 BODY.PEEK[]\r\n")
	if _, lits := readResponse(zc, "d"); len(lits) != 1 || !bytes.Equal(lits[0], msg) {
		t.Fatalf("FETCH after COMPRESS: %q", lits)
	}
	// The guard no longer follows the stream; Dovecot itself refuses a
	// second LOGIN.
	send("e LOGIN bob bobpw\r\n")
	if lines := zc.until("e "); strings.HasPrefix(lines[len(lines)-1], "e OK") {
		t.Fatalf("second LOGIN after COMPRESS: %q", lines)
	}
	send("z LOGOUT\r\n")
	zc.until("z OK")
}
