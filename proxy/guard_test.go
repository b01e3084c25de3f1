package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"imapproxy/config"
)

// routedFake starts a fake upstream and a proxy in front of it, and
// returns a logged-in text client.
func routedFake(t *testing.T, f *fakeUpstream) (*textClient, *fakeUpstream, string) {
	t.Helper()
	startFake(t, f)
	cfg := baseConfig(config.TLSNone, f.addr())
	cfg.Listen[0].AllowCleartextAuth = true
	p := startProxy(t, cfg)
	c := dialText(t, p.addr, false)
	c.line()
	c.send("l1 LOGIN alice alicepw\r\n")
	ok := c.line()
	if !strings.HasPrefix(ok, "l1 OK [CAPABILITY ") {
		t.Fatalf("login: %q", ok)
	}
	return c, f, ok
}

func TestCapabilityRewriting(t *testing.T) {
	_, _, ok := routedFake(t, &fakeUpstream{
		postCaps: "IMAP4rev1 STARTTLS AUTH=PLAIN AUTH=XOAUTH2 LOGINDISABLED SASL-IR UNAUTHENTICATE IDLE COMPRESS=DEFLATE CONDSTORE QRESYNC LITERAL+ SORT THREAD=REFERENCES",
	})
	caps := strings.Fields(strings.TrimSuffix(strings.TrimPrefix(ok, "l1 OK [CAPABILITY "), "] Logged in"))
	want := []string{"IMAP4rev1", "IDLE", "CONDSTORE", "QRESYNC", "LITERAL+", "SORT", "THREAD=REFERENCES"}
	if !slices.Equal(caps, want) {
		t.Fatalf("caps = %q, want %q", caps, want)
	}
}

func TestCompressPassesWithoutUnauthenticate(t *testing.T) {
	_, _, ok := routedFake(t, &fakeUpstream{postCaps: "IMAP4rev1 COMPRESS=DEFLATE"})
	if !strings.Contains(ok, "COMPRESS=DEFLATE") {
		t.Fatalf("COMPRESS removed although the guard allows it: %q", ok)
	}
}

func TestGuardRefusals(t *testing.T) {
	c, f, _ := routedFake(t, &fakeUpstream{postCaps: "IMAP4rev1 LITERAL+ UNAUTHENTICATE"})
	for i, cmd := range []string{"LOGIN bob bobpw", "AUTHENTICATE PLAIN", "UNAUTHENTICATE", "uid login x", "STARTTLS", "COMPRESS DEFLATE"} {
		tag := fmt.Sprintf("r%d", i)
		c.send(tag + " " + cmd + "\r\n")
		if l := c.line(); !strings.HasPrefix(l, tag+" BAD ") {
			t.Errorf("%s: %q", cmd, l)
		}
	}
	c.send("n1 NOOP\r\n")
	c.until("n1 OK")
	if got := f.commands(); !slices.Equal(got, []string{"n1 NOOP"}) {
		t.Fatalf("upstream received %q", got)
	}
}

// A payload that looks like commands must pass as payload, and a command
// after it must still be checked.
func TestGuardLiteralsWithLiteralPlus(t *testing.T) {
	c, f, _ := routedFake(t, &fakeUpstream{postCaps: "IMAP4rev1 LITERAL+"})
	payload := "x\r\nb LOGIN bob bobpw\r\n"
	c.send(fmt.Sprintf("a APPEND INBOX {%d}\r\n", len(payload)))
	if l := c.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("continuation: %q", l)
	}
	c.send(payload + "\r\nc LOGIN bob bobpw\r\n")
	// The refusal may come before the upstream's answer to APPEND.
	got := []string{c.line(), c.line()}
	slices.Sort(got)
	if !strings.HasPrefix(got[0], "a OK") || !strings.HasPrefix(got[1], "c BAD") {
		t.Fatalf("APPEND then LOGIN after literal: %q", got)
	}
	// Smuggling: the payload of a synchronizing literal sent without
	// waiting, on a command the upstream rejects, must stay payload.
	smuggled := "d UNAUTHENTICATE\r\n"
	c.send(fmt.Sprintf("e NOOP {%d}\r\n%s\r\n", len(smuggled), smuggled))
	c.until("e ")
	// A refused command with a non-synchronizing literal is swallowed whole.
	c.send("f LOGIN {3+}\r\nbob {5+}\r\nbobpw\r\ng NOOP\r\n")
	if l := c.line(); !strings.HasPrefix(l, "f BAD") {
		t.Fatalf("refused LOGIN with literals: %q", l)
	}
	c.until("g OK")
	got = f.commands()
	want := []string{
		"a APPEND INBOX {" + fmt.Sprint(len(payload)) + "+}\n<" + payload + ">",
		"e NOOP {" + fmt.Sprint(len(smuggled)) + "+}\n<" + smuggled + ">",
		"g NOOP",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("upstream received\n%q\nwant\n%q", got, want)
	}
}

// Without LITERAL+ upstream the guard holds a literal until the upstream
// asks for it; if the upstream refuses the command, what the client sent
// early is checked as commands.
func TestGuardSyncLiteralRefusedUpstream(t *testing.T) {
	c, f, _ := routedFake(t, &fakeUpstream{postCaps: "IMAP4rev1", syncLiterals: false})
	c.send("a NOOP {17}\r\nb UNAUTHENTICATE\r\nc NOOP\r\n")
	got := c.until("c ")
	if !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "a BAD") }) ||
		!slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "b BAD") }) {
		t.Fatalf("responses %q", got)
	}
	time.Sleep(50 * time.Millisecond)
	if cmds := f.commands(); !slices.Equal(cmds, []string{"c NOOP"}) {
		t.Fatalf("upstream received %q", cmds)
	}
}

func TestGuardSyncLiteralAcceptedUpstream(t *testing.T) {
	c, f, _ := routedFake(t, &fakeUpstream{postCaps: "IMAP4rev1", syncLiterals: true})
	c.send("a APPEND INBOX {5}\r\n")
	if l := c.line(); !strings.HasPrefix(l, "+ go ahead") {
		t.Fatalf("continuation should come from the upstream: %q", l)
	}
	c.send("hello\r\n")
	c.until("a OK")
	if cmds := f.commands(); !slices.Equal(cmds, []string{"a APPEND INBOX {5}\n<hello>"}) {
		t.Fatalf("upstream received %q", cmds)
	}
}

func TestGuardIdle(t *testing.T) {
	c, f, _ := routedFake(t, &fakeUpstream{postCaps: "IMAP4rev1 IDLE"})
	c.send("a IDLE\r\nDONE\r\nb LOGIN x y\r\nc NOOP\r\n")
	got := c.until("c ")
	if !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "b BAD") }) {
		t.Fatalf("responses %q", got)
	}
	if cmds := f.commands(); !slices.Equal(cmds, []string{"a IDLE", "DONE", "c NOOP"}) {
		t.Fatalf("upstream received %q", cmds)
	}
}

// runGuard sends input through a guard with policy, as the whole client
// stream, and returns what reached the upstream and what the proxy itself
// answered the client.
func runGuard(t testing.TB, policy guardPolicy, input []byte) (toUpstream, toClient []byte) {
	downServer, downClient := net.Pipe()
	upProxy, upServer := net.Pipe()
	feed, feedW := net.Pipe()
	received := make(chan []byte, 1)
	answered := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(upServer)
		received <- b
	}()
	go func() {
		b, _ := io.ReadAll(downClient)
		answered <- b
	}()
	go func() {
		feedW.Write(input)
		feedW.Close()
	}()
	g := &guard{
		policy:     policy,
		down:       feed,
		up:         upProxy,
		w:          newDownstreamWriter(downServer, time.Second),
		sig:        newContSignal(),
		cmdTimeout: time.Second,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g.run(ctx, nil)
	upProxy.Close()
	downServer.Close()
	feed.Close()
	return <-received, <-answered
}

func TestGuardReadOnly(t *testing.T) {
	in := "a SELECT INBOX\r\n" +
		"b UID STORE 1 +FLAGS (\\Seen)\r\n" +
		"c APPEND INBOX {5+}\r\nhello\r\n" +
		"d FETCH 1 BODY[]\r\n" +
		"e select {5+}\r\nDrafts\r\n" +
		"f COMPRESS DEFLATE\r\n" +
		"g EXPUNGE\r\n"
	up, down := runGuard(t, guardPolicy{literalPlus: true, allowCompress: true, readOnly: true}, []byte(in))
	wantUp := "a EXAMINE INBOX\r\nd FETCH 1 BODY[]\r\ne EXAMINE {5+}\r\nDrafts\r\n"
	if string(up) != wantUp {
		t.Errorf("upstream got %q\nwant %q", up, wantUp)
	}
	wantDown := "b NO [NOPERM] This login is read-only\r\n" +
		"c NO [NOPERM] This login is read-only\r\n" +
		"f BAD COMPRESS is not available through this proxy\r\n" +
		"g NO [NOPERM] This login is read-only\r\n"
	if string(down) != wantDown {
		t.Errorf("client got %q\nwant %q", down, wantDown)
	}
}
