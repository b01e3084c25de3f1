package proxy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The guard sits on the client-to-upstream side of a routed session. It
// follows command starts and literals and refuses the commands that would
// get around the proxy's authentication (a second LOGIN or AUTHENTICATE,
// UNAUTHENTICATE, STARTTLS, and COMPRESS where the stream could then no
// longer be followed). Literal payloads are forwarded without being parsed
// or held.
//
// Synchronizing literals need care: a client may send the payload without
// waiting for the continuation request, and if the upstream rejected the
// command instead, it would read that payload as new commands the guard never
// saw. So the guard never lets the upstream decide alone: where the upstream
// has LITERAL+ it turns "{n}" into "{n+}" (the upstream then always reads the
// payload as payload) and answers the client's continuation request itself;
// elsewhere it holds the payload until the upstream has asked for it.

// guardHoldMax is the most the guard holds of one line before it decides
// about it; later parts of a longer line are forwarded as they come.
const guardHoldMax = 64 << 10

// guardHead is how much of a command's first line the guard needs to decide.
const guardHead = 512

// guardIdleBuf is the guard's read buffer while the client is quiet; it
// grows for long lines and large literals, and shrinks back when empty.
const guardIdleBuf = 1 << 10

// guardPolicy is what the guard knows of the upstream session.
type guardPolicy struct {
	literalPlus   bool // the upstream accepts "{n+}"
	literalMinus  bool // the upstream accepts "{n+}" up to 4096 bytes
	allowCompress bool // COMPRESS may pass (then the guard stops following)
	// readOnly refuses commands that change mail or mailboxes, and turns
	// SELECT into EXAMINE so that reading does not set \Seen.
	readOnly bool
}

// writeCommands are refused in a read-only session. SELECT becomes EXAMINE,
// after which CLOSE and FETCH change nothing.
var writeCommands = map[string]bool{
	"APPEND": true, "STORE": true, "COPY": true, "MOVE": true, "EXPUNGE": true,
	"CREATE": true, "DELETE": true, "RENAME": true, "SUBSCRIBE": true, "UNSUBSCRIBE": true,
	"REPLACE": true, "SETACL": true, "DELETEACL": true, "SETQUOTA": true, "SETMETADATA": true,
}

// contSignal carries, from the upstream side to the guard, whether the
// upstream asked for a literal (true) or completed the command (false).
type contSignal struct {
	waiting atomic.Bool
	mu      sync.Mutex
	tag     []byte
	ch      chan bool
}

func newContSignal() *contSignal { return &contSignal{ch: make(chan bool, 1)} }

func (c *contSignal) arm(tag string) {
	c.mu.Lock()
	c.tag = append(c.tag[:0], tag...)
	c.tag = append(c.tag, ' ')
	c.mu.Unlock()
	c.waiting.Store(true)
}

// onUpstreamLine is called by the response scanner with the start of each
// upstream response line.
func (c *contSignal) onUpstreamLine(head []byte) {
	if !c.waiting.Load() {
		return
	}
	var v bool
	switch {
	case len(head) > 0 && head[0] == '+':
		v = true
	default:
		c.mu.Lock()
		tagged := bytes.HasPrefix(head, c.tag)
		c.mu.Unlock()
		if !tagged {
			return
		}
	}
	if c.waiting.CompareAndSwap(true, false) {
		c.ch <- v
	}
}

// guard is the state of the client-to-upstream side of one session.
type guard struct {
	policy guardPolicy
	down   net.Conn // the client
	up     net.Conn // the upstream
	w      *downstreamWriter
	sig    *contSignal
	// idleTimeout bounds the client's silence; 0: none.
	idleTimeout time.Duration
	// cmdTimeout bounds the wait for the upstream's continuation request.
	cmdTimeout time.Duration
	// onBytes counts bytes forwarded to the upstream.
	onBytes func(n int)
	// stopCompress is called when an allowed COMPRESS is sent, with its tag.
	stopCompress func(tag string)

	buf  []byte
	r, e int // unprocessed bytes are buf[r:e]
	out  []byte

	inCommand bool   // after the first line of a command, before its end
	tag       string // the current command's tag
	dropping  bool   // the current command is refused
	dropResp  string // the refusal, after the tag: "BAD text" or "NO [CODE] text"
	// rename, when set, replaces the current command's name (at
	// renameAt in its first line) as the line is forwarded.
	rename      string
	renameAt    [2]int
	literal     int64 // payload bytes still to come
	idling      bool
	passthrough bool
	deadlineSet time.Time
	lastRead    int  // bytes of the last read
	busy        bool // the last read filled the buffer
}

// run forwards the client's stream until either side fails. initial holds
// bytes the front door had already read.
func (g *guard) run(ctx context.Context, initial []byte) error {
	g.buf = make([]byte, max(guardIdleBuf, len(initial)))
	g.e = copy(g.buf, initial)
	if g.e > 0 {
		if err := g.process(ctx); err != nil {
			return err
		}
	}
	for {
		g.makeRoom()
		switch {
		case g.idling:
			// A client in IDLE is waiting for news, not idle: the autologout
			// timer does not run (RFC 9051 section 5.4 lets the server keep
			// it; TCP keepalive still finds dead clients).
			if !g.deadlineSet.IsZero() {
				g.deadlineSet = time.Time{}
				g.down.SetReadDeadline(time.Time{})
			}
		case g.idleTimeout > 0 && time.Since(g.deadlineSet) > time.Second:
			g.deadlineSet = time.Now()
			g.down.SetReadDeadline(g.deadlineSet.Add(g.idleTimeout))
		}
		space := len(g.buf) - g.e
		n, err := g.down.Read(g.buf[g.e:])
		g.e += n
		g.lastRead = n
		g.busy = n == space // more may be waiting: read in larger pieces
		if n > 0 {
			if perr := g.process(ctx); perr != nil {
				return perr
			}
		}
		if err != nil {
			return err
		}
	}
}

// makeRoom compacts or grows the buffer before a read, and gives a large
// buffer back when it is empty so that idle sessions stay small.
func (g *guard) makeRoom() {
	if g.r == g.e {
		g.r, g.e = 0, 0
		switch {
		case g.busy && len(g.buf) < largeRelayBuf:
			g.buf = make([]byte, largeRelayBuf)
		case !g.busy && g.lastRead < guardIdleBuf/2 && len(g.buf) > guardIdleBuf:
			g.buf = make([]byte, guardIdleBuf)
		}
		return
	}
	if g.e < len(g.buf) {
		return
	}
	if g.r > 0 {
		g.e = copy(g.buf, g.buf[g.r:g.e])
		g.r = 0
		return
	}
	nb := make([]byte, min(2*len(g.buf), guardHoldMax+maxLiteralMarker+2))
	g.e = copy(nb, g.buf[g.r:g.e])
	g.r = 0
	g.buf = nb
}

func (g *guard) emit(b []byte) {
	if !g.dropping {
		g.out = append(g.out, b...)
	}
}

func (g *guard) flush() error {
	if len(g.out) == 0 {
		return nil
	}
	_, err := g.up.Write(g.out)
	if g.onBytes != nil {
		g.onBytes(len(g.out))
	}
	if cap(g.out) > 64<<10 {
		g.out = nil
	} else {
		g.out = g.out[:0]
	}
	return err
}

// process handles the buffered bytes as far as it can.
func (g *guard) process(ctx context.Context) error {
	for g.r < g.e {
		data := g.buf[g.r:g.e]
		if g.passthrough {
			g.emit(data)
			g.r = g.e
			break
		}
		if g.literal > 0 {
			k := min(int64(len(data)), g.literal)
			g.emit(data[:k])
			g.literal -= k
			g.r += int(k)
			continue
		}
		j := bytes.IndexByte(data, '\n')
		if j < 0 {
			if !g.inCommand {
				if len(data) < guardHead {
					break // wait for the rest of the command's start
				}
				g.decide(data)
			}
			// Forward all but the end of the line, which may be a literal
			// marker still being written.
			if k := len(data) - (maxLiteralMarker + 2); k > 0 {
				g.emitFirst(data[:k])
				g.r += k
			}
			break
		}
		line := data[:j+1]
		g.r += j + 1
		if !g.inCommand {
			g.decide(line)
		}
		size, plus, brace, ok := parseLiteralMarker(trimEOL(line))
		if !ok {
			g.emitFirst(line)
			if err := g.endCommand(); err != nil {
				return err
			}
			continue
		}
		if g.dropping {
			if plus {
				g.literal = size // swallow the payload, then the rest
				continue
			}
			// The client waits for a continuation request; it gets the
			// refusal instead and sends no payload.
			if err := g.endCommand(); err != nil {
				return err
			}
			continue
		}
		if plus {
			g.emitFirst(line)
			g.literal = size
			continue
		}
		if g.policy.literalPlus || (g.policy.literalMinus && size <= 4096) {
			g.emitFirst(line[:brace])
			g.emit([]byte{'+'})
			g.emit(line[brace:])
			g.literal = size
			if err := g.w.writeLine([]byte("+ Ready for literal data\r\n")); err != nil {
				return err
			}
			continue
		}
		g.emitFirst(line)
		asked, err := g.awaitContinuation(ctx)
		if err != nil {
			return err
		}
		if asked {
			g.literal = size
		} else {
			g.inCommand = false // the upstream refused it; what follows is new
		}
	}
	return g.flush()
}

// awaitContinuation sends what is pending and waits for the upstream to ask
// for the literal or to complete the command.
func (g *guard) awaitContinuation(ctx context.Context) (bool, error) {
	g.sig.arm(g.tag)
	if err := g.flush(); err != nil {
		return false, err
	}
	timer := time.NewTimer(g.cmdTimeout)
	defer timer.Stop()
	select {
	case v := <-g.sig.ch:
		return v, nil
	case <-timer.C:
		return false, fmt.Errorf("upstream did not answer a literal within %v", g.cmdTimeout)
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// endCommand finishes the current command: a refused one gets its BAD.
func (g *guard) endCommand() error {
	g.inCommand = false
	if !g.dropping {
		return nil
	}
	g.dropping = false
	return g.w.writeLine([]byte(g.tag + " " + g.dropResp + "\r\n"))
}

// decide looks at the start of a command and sets whether it passes.
func (g *guard) decide(line []byte) {
	g.inCommand = true
	tag, name, sub := commandHead(line)
	g.tag = tag
	if g.idling && bytes.EqualFold(bytes.TrimSpace(line), []byte("DONE")) {
		g.idling = false
		return
	}
	if name == "UID" {
		name = sub
	}
	if g.policy.readOnly {
		switch {
		case writeCommands[name]:
			g.refuseWith("NO [NOPERM] This login is read-only")
			return
		case name == "SELECT":
			if i := bytes.Index(bytes.ToUpper(line), []byte("SELECT")); i >= 0 {
				g.rename, g.renameAt = "EXAMINE", [2]int{i, i + len("SELECT")}
			}
		}
	}
	switch name {
	case "LOGIN", "AUTHENTICATE":
		g.refuse("Already logged in")
	case "UNAUTHENTICATE":
		g.refuse("UNAUTHENTICATE is not available through this proxy")
	case "STARTTLS":
		g.refuse("TLS is handled by the proxy")
	case "COMPRESS":
		if !g.policy.allowCompress || g.policy.readOnly {
			g.refuse("COMPRESS is not available through this proxy")
			return
		}
		g.passthrough = true
		if g.stopCompress != nil {
			g.stopCompress(tag)
		}
	case "IDLE":
		g.idling = true
	}
}

func (g *guard) refuse(text string) { g.refuseWith("BAD " + text) }

func (g *guard) refuseWith(resp string) {
	if !validTag(g.tag) {
		g.tag = "*"
	}
	g.dropping = true
	g.dropResp = resp
}

// emitFirst forwards the first bytes of a command, renamed if decide said
// so.
func (g *guard) emitFirst(b []byte) {
	if g.rename == "" || len(b) < g.renameAt[1] {
		g.emit(b)
		return
	}
	g.emit(b[:g.renameAt[0]])
	g.emit([]byte(g.rename))
	g.emit(b[g.renameAt[1]:])
	g.rename = ""
}

// commandHead returns the tag, the upper-cased command name and the
// upper-cased word after it. It is lenient on purpose: words may be
// separated by runs of spaces, tabs or other control characters and the tag
// is not checked, so that no spelling an upstream might accept slips past
// the guard.
func commandHead(line []byte) (tag, name, sub string) {
	words := bytes.FieldsFunc(trimEOL(line), func(r rune) bool { return r <= ' ' })
	if len(words) < 2 {
		return "", "", ""
	}
	tag = string(words[0])
	name = string(bytes.ToUpper(words[1]))
	if len(words) > 2 {
		sub = string(bytes.ToUpper(words[2]))
	}
	return tag, name, sub
}

// validTag reports whether tag is a well-formed IMAP tag.
func validTag(tag string) bool {
	if tag == "" {
		return false
	}
	for i := 0; i < len(tag); i++ {
		if !isAtomChar(tag[i]) || tag[i] == '+' {
			return false
		}
	}
	return true
}
