package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

const fakeCaps = "IMAP4rev1 NAMESPACE IDLE UIDPLUS"

// fakeLogin is the login phase DialClient goes through with an upstream
// advertising caps (with NAMESPACE): greeting, LOGIN, CAPABILITY, then
// NAMESPACE answering with a personal namespace "INBOX." and ".".
func fakeLogin(caps string) []step {
	return []step{
		send("* OK [CAPABILITY " + caps + "] fake ready"),
		expect(`$T LOGIN "user" "pass"`),
		send("$T OK [CAPABILITY " + caps + "] logged in"),
		expect("$T CAPABILITY"),
		send("* CAPABILITY " + caps),
		send("$T OK done"),
		expect("$T NAMESPACE"),
		send(`* NAMESPACE (("INBOX." ".")) NIL NIL`),
		send("$T OK done"),
	}
}

// logout answers the LOGOUT of Close.
func logout() []step {
	return []step{expect("$T LOGOUT"), send("* BYE bye"), send("$T OK done")}
}

func fakeAccount(addr string, timeout time.Duration) AccountOptions {
	return AccountOptions{
		Options:     Options{Name: "fake", Address: addr, TLS: TLSNone, CommandTimeout: timeout},
		Credentials: Credentials{Username: "user", Password: "pass"},
	}
}

func script(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestClientFakeNamespace(t *testing.T) {
	addr := startFake(t, script(fakeLogin(fakeCaps), logout())...)
	c := dialT(t, fakeAccount(addr, 5*time.Second))
	if c.Delimiter() != "." || c.PersonalPrefix() != "INBOX." {
		t.Errorf("delimiter %q prefix %q", c.Delimiter(), c.PersonalPrefix())
	}
	if !c.Caps().Has(imap.CapUIDPlus) {
		t.Errorf("caps %v", c.Caps())
	}
}

func TestClientFakeListDelimiter(t *testing.T) {
	// No NAMESPACE: the delimiter comes from LIST "" "".
	addr := startFake(t,
		send("* OK [CAPABILITY IMAP4rev1] hi"),
		expect(`$T LOGIN "user" "pass"`),
		send("$T OK [CAPABILITY IMAP4rev1 IDLE] in"),
		expect("$T CAPABILITY"),
		send("* CAPABILITY IMAP4rev1 IDLE"),
		send("$T OK done"),
		expect(`$T LIST "" ""`),
		send(`* LIST (\Noselect) "." ""`),
		send("$T OK done"),
		expect("$T LOGOUT"), send("* BYE bye"), send("$T OK done"),
	)
	c := dialT(t, fakeAccount(addr, 5*time.Second))
	if c.Delimiter() != "." || c.PersonalPrefix() != "" {
		t.Errorf("delimiter %q prefix %q", c.Delimiter(), c.PersonalPrefix())
	}
}

func TestClientFakeAuthenticate(t *testing.T) {
	plain := base64.StdEncoding.EncodeToString([]byte("\x00user\x00pass"))
	xoauth := base64.StdEncoding.EncodeToString([]byte("user=user\x01auth=Bearer pass\x01\x01"))
	status := base64.StdEncoding.EncodeToString([]byte(`{"status":"401"}`))
	tests := []struct {
		name    string
		xoauth2 bool
		steps   []step
		want    error
		text    string
	}{
		{"plain", false, []step{
			send("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN SASL-IR] hi"),
			expect("$T AUTHENTICATE PLAIN " + plain),
			send("$T OK [CAPABILITY IMAP4rev1] in"),
		}, nil, ""},
		{"xoauth2", true, []step{
			send("* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] hi"),
			expect("$T AUTHENTICATE XOAUTH2"),
			send("+ "),
			expect(xoauth),
			send("$T OK [CAPABILITY IMAP4rev1] in"),
		}, nil, ""},
		{"xoauth2 refused", true, []step{
			send("* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR] hi"),
			expect("$T AUTHENTICATE XOAUTH2 " + xoauth),
			send("+ " + status),
		}, ErrAuthFailed, `{"status":"401"}`},
		{"login refused", false, []step{
			send("* OK [CAPABILITY IMAP4rev1] hi"),
			expect(`$T LOGIN "user" "pass"`),
			send("$T NO [AUTHENTICATIONFAILED] bad pass for user"),
		}, ErrAuthFailed, "bad *** for user"},
		{"login unavailable", false, []step{
			send("* OK [CAPABILITY IMAP4rev1] hi"),
			expect(`$T LOGIN "user" "pass"`),
			send("$T NO [UNAVAILABLE] try later"),
		}, ErrUnavailable, "try later"},
		{"bye greeting", false, []step{send("* BYE [UNAVAILABLE] too busy")}, ErrUnavailable, "too busy"},
		{"preauth", false, []step{send("* PREAUTH [CAPABILITY IMAP4rev1] hi")}, ErrUnavailable, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			steps := tt.steps
			if tt.want == nil {
				steps = append(steps,
					expect("$T CAPABILITY"), send("* CAPABILITY IMAP4rev1"), send("$T OK done"),
					expect(`$T LIST "" ""`), send(`* LIST (\Noselect) "/" ""`), send("$T OK done"))
				steps = append(steps, logout()...)
			}
			o := fakeAccount(startFake(t, steps...), 5*time.Second)
			o.XOAUTH2 = tt.xoauth2
			c, err := DialClient(context.Background(), o)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
				return
			}
			var e *Error
			if !errors.Is(err, tt.want) || !errors.As(err, &e) || !strings.Contains(e.Text, tt.text) {
				t.Fatalf("err = %v, want %v with text %q", err, tt.want, tt.text)
			}
		})
	}
}

// fetchScript selects INBOX and finds UID 42 at sequence number 2.
func fetchScript() []step {
	return []step{
		expect("$T SELECT INBOX"),
		send("* 3 EXISTS"),
		send("* OK [UIDVALIDITY 7] ok"),
		send("$T OK [READ-WRITE] done"),
		expect("$T SEARCH UID 42"),
		send("* SEARCH 2"),
		send("$T OK done"),
		expect("$T FETCH 2 (UID BODY.PEEK[])"),
	}
}

func TestClientFakeFetchRawOrder(t *testing.T) {
	var unilateral atomic.Int32
	tests := []struct {
		name  string
		steps []step
		want  string
		err   bool
	}{
		{"body before UID", []step{
			sendRaw("* 2 FETCH (BODY[] {11}\r\nhello world UID 42)\r\n$T OK done\r\n"),
		}, "hello world", false},
		{"UID first", []step{
			sendRaw("* 2 FETCH (UID 42 BODY[] {5}\r\nhello)\r\n$T OK done\r\n"),
		}, "hello", false},
		{"moved, UID first", []step{
			sendRaw("* 2 FETCH (UID 41 BODY[] {5}\r\nwrong)\r\n$T OK done\r\n"),
			expect("$T SEARCH UID 42"),
			send("* SEARCH 1"),
			send("$T OK done"),
			expect("$T FETCH 1 (UID BODY.PEEK[])"),
			sendRaw("* 1 FETCH (UID 42 BODY[] {5}\r\nright)\r\n$T OK done\r\n"),
		}, "right", false},
		{"unsolicited FETCH first", []step{
			sendRaw("* 2 FETCH (FLAGS (\\Seen))\r\n* 2 FETCH (UID 42 BODY[] {5}\r\nstray)\r\n$T OK done\r\n"),
			expect("$T SEARCH UID 42"),
			send("* SEARCH 2"),
			send("$T OK done"),
			expect("$T FETCH 2 (UID BODY.PEEK[])"),
			sendRaw("* 2 FETCH (UID 42 BODY[] {5}\r\nagain)\r\n$T OK done\r\n"),
		}, "again", false},
		{"moved, UID after body", []step{
			sendRaw("* 2 FETCH (BODY[] {5}\r\nwrong UID 41)\r\n$T OK done\r\n"),
		}, "wrong", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startFake(t, script(fakeLogin(fakeCaps), fetchScript(), tt.steps, []step{
				expect("$T NOOP"), send("$T OK done"),
			}, logout())...)
			o := fakeAccount(addr, 5*time.Second)
			o.Unilateral = &imapclient.UnilateralDataHandler{
				Fetch: func(*imapclient.FetchMessageData) { unilateral.Add(1) },
			}
			c := dialT(t, o)
			ctx := context.Background()
			if _, err := c.Select(ctx, "INBOX", false); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			n, err := c.FetchRaw(ctx, 42, &buf)
			if (err != nil) != tt.err || buf.String() != tt.want || n != int64(len(tt.want)) {
				t.Errorf("FetchRaw = %d, %v; wrote %q, want %q (error %v)", n, err, buf.String(), tt.want, tt.err)
			}
			if err := c.Noop(ctx); err != nil {
				t.Errorf("NOOP after FetchRaw: %v", err)
			}
		})
	}
	if unilateral.Load() != 1 {
		t.Errorf("unilateral FETCH handler ran %d times, want 1 (the stray body)", unilateral.Load())
	}
}

func TestClientFakeStall(t *testing.T) {
	const timeout = 300 * time.Millisecond
	tests := []struct {
		name  string
		steps []step
		run   func(ctx context.Context, c *Client) error
	}{
		{"select", []step{expect("$T SELECT INBOX"), stall()}, func(ctx context.Context, c *Client) error {
			_, err := c.Select(ctx, "INBOX", false)
			return err
		}},
		{"mid-literal", script(fetchScript(), []step{
			sendRaw("* 2 FETCH (UID 42 BODY[] {100}\r\nonly a part"), stall(),
		}), func(ctx context.Context, c *Client) error {
			if _, err := c.Select(ctx, "INBOX", false); err != nil {
				return fmt.Errorf("select: %w", err)
			}
			_, err := c.FetchRaw(ctx, 42, &bytes.Buffer{})
			return err
		}},
		{"do", []step{expect("$T NOOP"), stall()}, func(ctx context.Context, c *Client) error {
			return c.Do(ctx, func(ic *imapclient.Client) error { return ic.Noop().Wait() })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startFake(t, script(fakeLogin(fakeCaps), tt.steps)...)
			c := dialT(t, fakeAccount(addr, timeout))
			start := time.Now()
			err := tt.run(context.Background(), c)
			took := time.Since(start)
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "stalled") {
				t.Errorf("err = %v, want a stall", err)
			}
			if took > timeout+time.Second {
				t.Errorf("took %v with a %v timeout", took, timeout)
			}
			if !c.Broken() {
				t.Error("not broken after a stall")
			}
			if err := c.Noop(context.Background()); !errors.Is(err, ErrUnavailable) {
				t.Errorf("NOOP on a broken client: %v", err)
			}
		})
	}
}

func TestClientFakeUnknownResponse(t *testing.T) {
	// imapclient gives up on a response it cannot parse.
	addr := startFake(t, script(fakeLogin(fakeCaps), []step{
		expect("$T NOOP"), send("* XYZZY 1 2 3"), send("$T OK done"),
	})...)
	c := dialT(t, fakeAccount(addr, 5*time.Second))
	if err := c.Noop(context.Background()); !errors.Is(err, ErrUnavailable) || !c.Broken() {
		t.Fatalf("err = %v, broken %v", err, c.Broken())
	}
}

func TestClientFakeCancel(t *testing.T) {
	addr := startFake(t, script(fakeLogin(fakeCaps), []step{expect("$T NOOP"), stall()})...)
	c := dialT(t, fakeAccount(addr, time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := c.Noop(ctx)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) || !c.Broken() {
		t.Fatalf("err = %v, broken %v", err, c.Broken())
	}
}

func TestClientFakeDialStall(t *testing.T) {
	for _, tt := range []struct {
		name  string
		steps []step
	}{
		{"greeting", []step{stall()}},
		{"login", []step{send("* OK [CAPABILITY IMAP4rev1] hi"), stall()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := startFake(t, tt.steps...)
			start := time.Now()
			_, err := DialClient(context.Background(), fakeAccount(addr, 300*time.Millisecond))
			if !errors.Is(err, ErrUnavailable) || time.Since(start) > 2*time.Second {
				t.Fatalf("err = %v after %v", err, time.Since(start))
			}
		})
	}
}

// startBig serves one connection that logs in, selects, and sends body
// as UID 7 at sequence number 1, straight from memory in 64 KiB writes,
// so that the test measures only the client's allocations.
func startBig(t *testing.T, body []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(conn)
		fmt.Fprintf(conn, "* OK [CAPABILITY IMAP4rev1] big\r\n")
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			tag, cmd, _ := strings.Cut(strings.TrimSpace(line), " ")
			verb, _, _ := strings.Cut(cmd, " ")
			switch verb {
			case "LOGIN":
				fmt.Fprintf(conn, "%s OK [CAPABILITY IMAP4rev1] in\r\n", tag)
			case "CAPABILITY":
				fmt.Fprintf(conn, "* CAPABILITY IMAP4rev1\r\n%s OK done\r\n", tag)
			case "LIST":
				fmt.Fprintf(conn, "* LIST (\\Noselect) \"/\" \"\"\r\n%s OK done\r\n", tag)
			case "SELECT":
				fmt.Fprintf(conn, "* 1 EXISTS\r\n%s OK [READ-WRITE] done\r\n", tag)
			case "SEARCH":
				fmt.Fprintf(conn, "* SEARCH 1\r\n%s OK done\r\n", tag)
			case "FETCH":
				fmt.Fprintf(conn, "* 1 FETCH (UID 7 BODY[] {%d}\r\n", len(body))
				for b := body; len(b) > 0; {
					n := min(len(b), 64<<10)
					if _, err := conn.Write(b[:n]); err != nil {
						return
					}
					b = b[n:]
				}
				fmt.Fprintf(conn, ")\r\n%s OK done\r\n", tag)
			case "LOGOUT":
				fmt.Fprintf(conn, "* BYE bye\r\n%s OK done\r\n", tag)
				return
			default:
				fmt.Fprintf(conn, "%s BAD unknown\r\n", tag)
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

func TestClientFetchRawStreams(t *testing.T) {
	const size = 5 << 20
	body := testMessage(size)
	c := dialT(t, fakeAccount(startBig(t, body), 5*time.Second))
	ctx := context.Background()
	if _, err := c.Select(ctx, "INBOX", false); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n, err := c.FetchRaw(ctx, 7, h)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(body)) || !bytes.Equal(h.Sum(nil), sha256Sum(body)) {
		t.Fatalf("got %d bytes, want %d, same content: %v", n, len(body), bytes.Equal(h.Sum(nil), sha256Sum(body)))
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("streamed %d bytes with %d bytes allocated", n, allocated)
	if allocated > size/5 {
		t.Errorf("allocated %d bytes to stream %d: the message was buffered", allocated, size)
	}
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
