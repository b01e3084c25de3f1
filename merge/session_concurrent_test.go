package merge

// Two sessions of one user (a phone and a laptop) on the same folders:
// interleaved STORE, EXPUNGE and APPEND from a seeded RNG. Each client is
// a raw IMAP client that keeps its own model of the mailbox (sequence
// number → vuid and flags) from the untagged responses alone, and the
// model is checked at every response (an EXPUNGE or FETCH naming a
// sequence number the client does not have, or a FETCH UID other than
// the one the model has at that number, fails the test) and against the
// upstreams' truth mapped through the store.

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// modelMsg is one message of a raw client's model.
type modelMsg struct {
	vuid  uint32 // 0 until a FETCH names it
	flags string // normalized; "?" until a FETCH gives them
}

// rawClient speaks IMAP to the front server and keeps a model of its
// selected mailbox from the untagged responses.
type rawClient struct {
	t     *testing.T
	name  string
	conn  net.Conn
	lines chan string // from the reader goroutine; closed when it ends
	done  chan struct{}
	tag   int
	msgs  []modelMsg
}

func dialRaw(t *testing.T, addr, name string) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &rawClient{t: t, name: name, conn: conn, lines: make(chan string, 1024), done: make(chan struct{})}
	go c.read()
	t.Cleanup(func() {
		conn.Close()
		<-c.done
	})
	if l := c.line(); !strings.HasPrefix(l, "* PREAUTH") {
		t.Fatalf("%s: greeting %q", name, l)
	}
	return c
}

// read passes the server's lines on until the connection closes.
func (c *rawClient) read() {
	defer close(c.done)
	defer close(c.lines)
	br := bufio.NewReader(c.conn)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return
		}
		c.lines <- strings.TrimRight(l, "\r\n")
	}
}

// line returns the next line, failing after 10s.
func (c *rawClient) line() string {
	c.t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			c.t.Fatalf("%s: connection closed", c.name)
		}
		return l
	case <-time.After(10 * time.Second):
		c.t.Fatalf("%s: no answer", c.name)
		return ""
	}
}

func (c *rawClient) send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatalf("%s: %v", c.name, err)
	}
}

// cmd sends a command and applies its untagged responses; a tagged
// answer other than OK fails the test.
func (c *rawClient) cmd(format string, args ...any) {
	c.t.Helper()
	c.tag++
	tag := "t" + strconv.Itoa(c.tag)
	c.send(tag + " " + fmt.Sprintf(format, args...) + "\r\n")
	c.until(tag)
}

// until applies lines up to the tagged answer of tag.
func (c *rawClient) until(tag string) {
	c.t.Helper()
	for {
		l := c.line()
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			if !strings.HasPrefix(rest, "OK") {
				c.t.Fatalf("%s: %s", c.name, l)
			}
			return
		}
		c.apply(l)
	}
}

// selectMailbox selects name and starts a new model.
func (c *rawClient) selectMailbox(name string) {
	c.t.Helper()
	c.msgs = nil
	c.cmd("SELECT %s", name)
	c.cmd("FETCH 1:* (UID FLAGS)")
}

// appendMsg appends a small message to mailbox.
func (c *rawClient) appendMsg(mailbox, subject string) {
	c.t.Helper()
	msg := "From: a@b.example\r\nSubject: " + subject + "\r\n\r\nbody\r\n"
	c.tag++
	tag := "t" + strconv.Itoa(c.tag)
	c.send(fmt.Sprintf("%s APPEND %s (\\Seen) {%d}\r\n", tag, mailbox, len(msg)))
	for {
		l := c.line()
		if strings.HasPrefix(l, "+") {
			break
		}
		if strings.HasPrefix(l, tag+" ") {
			c.t.Fatalf("%s: %s", c.name, l)
		}
		c.apply(l)
	}
	c.send(msg + "\r\n")
	c.until(tag)
}

var (
	existsRe  = regexp.MustCompile(`^\* (\d+) EXISTS$`)
	expungeRe = regexp.MustCompile(`^\* (\d+) EXPUNGE$`)
	fetchRe   = regexp.MustCompile(`^\* (\d+) FETCH \((.*)\)$`)
	uidRe     = regexp.MustCompile(`\bUID (\d+)`)
	flagsRe   = regexp.MustCompile(`\bFLAGS \(([^)]*)\)`)
)

// apply updates the model with an untagged response, checking it.
func (c *rawClient) apply(l string) {
	c.t.Helper()
	num := func(s string) int { n, _ := strconv.Atoi(s); return n }
	if m := existsRe.FindStringSubmatch(l); m != nil {
		n := num(m[1])
		if n < len(c.msgs) {
			c.t.Fatalf("%s: %q with %d messages", c.name, l, len(c.msgs))
		}
		for len(c.msgs) < n {
			c.msgs = append(c.msgs, modelMsg{flags: "?"})
		}
		return
	}
	if m := expungeRe.FindStringSubmatch(l); m != nil {
		seq := num(m[1])
		if seq < 1 || seq > len(c.msgs) {
			c.t.Fatalf("%s: %q with %d messages", c.name, l, len(c.msgs))
		}
		c.msgs = slices.Delete(c.msgs, seq-1, seq)
		return
	}
	m := fetchRe.FindStringSubmatch(l)
	if m == nil {
		return
	}
	seq := num(m[1])
	if seq < 1 || seq > len(c.msgs) {
		c.t.Fatalf("%s: %q with %d messages", c.name, l, len(c.msgs))
	}
	msg := &c.msgs[seq-1]
	if u := uidRe.FindStringSubmatch(m[2]); u != nil {
		vuid := uint32(num(u[1]))
		if msg.vuid != 0 && msg.vuid != vuid {
			c.t.Fatalf("%s: %q, but sequence number %d is UID %d", c.name, l, seq, msg.vuid)
		}
		msg.vuid = vuid
	}
	if f := flagsRe.FindStringSubmatch(m[2]); f != nil {
		msg.flags = modelFlags(strings.Fields(f[1]))
	}
}

// modelFlags sorts and lowers flags, without \Recent.
func modelFlags(fs []string) string {
	var out []string
	for _, f := range fs {
		if f = strings.ToLower(f); f != `\recent` {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// concEnv is the upstreams, the store and what the virtual folders are
// made of.
type concEnv struct {
	*sessEnv
}

// truth returns the messages of virtual folder name as the upstreams
// have them, by vuid from the store; unmapped counts upstream messages
// the store has no vuid for yet.
func (e concEnv) truth(name string) (msgs map[uint32]string, unmapped int) {
	t := e.t
	t.Helper()
	type src struct {
		account string
		up      *memUpstream
	}
	srcs := []src{{"work", e.work}}
	if name == "INBOX" {
		srcs = append(srcs, src{"home", e.home})
	}
	ctx := context.Background()
	vm, err := e.st.VMailbox(ctx, "alice", name)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := e.st.VMessages(ctx, vm.ID)
	if err != nil {
		t.Fatal(err)
	}
	msgs = make(map[uint32]string)
	for _, s := range srcs {
		byUID := make(map[uint32]uint32)
		for _, r := range rows {
			if r.Account == s.account && r.Mailbox == "INBOX" {
				byUID[r.UID] = max(byUID[r.UID], r.VUID)
			}
		}
		for uid, flags := range upstreamFlags(s.up, "INBOX") {
			var fs []string
			for _, f := range flags {
				fs = append(fs, string(f))
			}
			if v, ok := byUID[uint32(uid)]; ok {
				msgs[v] = modelFlags(fs)
			} else {
				unmapped++
			}
		}
	}
	return msgs, unmapped
}

// matches reports whether c's model agrees with the truth as far as it
// knows: as many messages, each known vuid there with its flags.
func (c *rawClient) matches(truth map[uint32]string, unmapped int) bool {
	if len(c.msgs) != len(truth)+unmapped {
		return false
	}
	for _, m := range c.msgs {
		if m.vuid == 0 {
			continue
		}
		if f, ok := truth[m.vuid]; !ok || m.flags != "?" && m.flags != f {
			return false
		}
	}
	return true
}

// converge NOOPs (or IDLEs, waiting for updates) until c's model agrees
// with the truth of folder, failing after 15s.
func (c *rawClient) converge(e concEnv, folder string, idle bool) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	if idle {
		c.tag++
		tag := "t" + strconv.Itoa(c.tag)
		c.send(tag + " IDLE\r\n")
		for l := c.line(); !strings.HasPrefix(l, "+"); l = c.line() {
			c.apply(l)
		}
		for {
			truth, unmapped := e.truth(folder)
			if c.matches(truth, unmapped) {
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("%s: IDLE in %s: model %v, truth %v (+%d unmapped)", c.name, folder, c.msgs, truth, unmapped)
			}
			select {
			case l, ok := <-c.lines:
				if !ok {
					c.t.Fatalf("%s: connection closed", c.name)
				}
				c.apply(l)
			case <-time.After(100 * time.Millisecond):
			}
		}
		c.send("DONE\r\n")
		c.until(tag)
		return
	}
	for {
		c.cmd("NOOP")
		truth, unmapped := e.truth(folder)
		if c.matches(truth, unmapped) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: NOOP in %s: model %v, truth %v (+%d unmapped)", c.name, folder, c.msgs, truth, unmapped)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkView compares c's whole view (UID FETCH 1:* FLAGS after NOOP)
// with the truth: the same vuids, in increasing order, with the same
// flags.
func (c *rawClient) checkView(e concEnv, folder string) {
	c.t.Helper()
	c.cmd("NOOP")
	c.cmd("UID FETCH 1:* (FLAGS)")
	truth, unmapped := e.truth(folder)
	if unmapped > 0 {
		c.t.Fatalf("%s: %s: %d upstream messages without a vuid after NOOP", c.name, folder, unmapped)
	}
	got := make(map[uint32]string)
	var last uint32
	for i, m := range c.msgs {
		if m.vuid <= last {
			c.t.Fatalf("%s: %s: sequence number %d is UID %d after UID %d", c.name, folder, i+1, m.vuid, last)
		}
		last = m.vuid
		got[m.vuid] = m.flags
	}
	if fmt.Sprint(got) != fmt.Sprint(truth) {
		c.t.Fatalf("%s: %s:\nview  %v\ntruth %v", c.name, folder, got, truth)
	}
}

// op makes one random change through c in folder, and returns what it
// did.
func (c *rawClient) op(rng *rand.Rand, folder string, n int) string {
	c.t.Helper()
	if rng.IntN(2) == 0 {
		c.cmd("FETCH 1:* (UID FLAGS)")
	}
	flags := []string{`\Flagged`, `\Seen`, `\Answered`, `$Todo`}
	switch k := rng.IntN(10); {
	case len(c.msgs) < 3 || k < 3:
		subject := fmt.Sprintf("%s-%d", c.name, n)
		c.appendMsg(folder, subject)
		return "APPEND " + subject
	case k < 7:
		seq := 1 + rng.IntN(len(c.msgs))
		op := []string{"+FLAGS", "-FLAGS", "FLAGS"}[rng.IntN(3)]
		f := flags[rng.IntN(len(flags))]
		if rng.IntN(2) == 0 {
			c.cmd("STORE %d %s (%s)", seq, op, f)
			return fmt.Sprintf("STORE %d %s (%s)", seq, op, f)
		}
		c.cmd("FETCH %d (UID)", seq)
		uid := c.msgs[seq-1].vuid
		c.cmd("UID STORE %d %s (%s)", uid, op, f)
		return fmt.Sprintf("UID STORE %d %s (%s)", uid, op, f)
	default:
		seq := 1 + rng.IntN(len(c.msgs))
		if rng.IntN(2) == 0 {
			c.cmd(`STORE %d +FLAGS.SILENT (\Deleted)`, seq)
			c.cmd("EXPUNGE")
			return fmt.Sprintf("STORE %d \\Deleted, EXPUNGE", seq)
		}
		c.cmd("FETCH %d (UID)", seq)
		uid := c.msgs[seq-1].vuid
		c.cmd(`UID STORE %d +FLAGS.SILENT (\Deleted)`, uid)
		c.cmd("UID EXPUNGE %d", uid)
		return fmt.Sprintf("UID EXPUNGE %d", uid)
	}
}

func TestSessionsOfOneUserConcurrent(t *testing.T) {
	e := concEnv{newSessEnv(t)}
	e.serve(nil)
	phone, laptop := dialRaw(t, e.addr, "phone"), dialRaw(t, e.addr, "laptop")
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("IMAPPROXY_TEST_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (IMAPPROXY_TEST_SEED repeats it)", seed)
	rng := rand.New(rand.NewPCG(seed, 6))

	ops := 12
	if testing.Short() {
		ops = 4
	}
	n := 0
	for _, folders := range [][2]string{{"INBOX", "INBOX"}, {"Work/INBOX", "Work/INBOX"}, {"INBOX", "Work/INBOX"}} {
		phone.selectMailbox(folders[0])
		laptop.selectMailbox(folders[1])
		clients := []*rawClient{phone, laptop}
		folderOf := map[*rawClient]string{phone: folders[0], laptop: folders[1]}
		for range ops {
			n++
			i := rng.IntN(2)
			actor, other := clients[i], clients[1-i]
			idle := rng.IntN(2) == 0
			what := actor.op(rng, folderOf[actor], n)
			t.Logf("%d: %s in %s: %s; %s in %s %s", n, actor.name, folderOf[actor], what, other.name, folderOf[other],
				map[bool]string{true: "IDLEs", false: "NOOPs"}[idle])
			other.converge(e, folderOf[other], idle)
			actor.converge(e, folderOf[actor], false)
			if rng.IntN(3) == 0 {
				other.checkView(e, folderOf[other])
			}
		}
		phone.checkView(e, folders[0])
		laptop.checkView(e, folders[1])
	}
}
