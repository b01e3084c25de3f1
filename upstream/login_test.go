package upstream

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// plainOpts returns options for a cleartext fake upstream at addr with a
// short command timeout.
func plainOpts(addr string) Options {
	return Options{Name: "fake", Address: addr, TLS: TLSNone, CommandTimeout: 500 * time.Millisecond}
}

// dialFake starts a fake upstream with script and dials it in cleartext.
func dialFake(t *testing.T, script ...step) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), plainOpts(startFake(t, script...)), ClientInfo{})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not *Error", err, err)
	}
	return e
}

func TestGreetingBYE(t *testing.T) {
	addr := startFake(t, send("* BYE [UNAVAILABLE] Server shutting down"))
	_, err := Dial(context.Background(), plainOpts(addr), ClientInfo{})
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrAuthFailed) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	e := asError(t, err)
	if e.Op != "greeting" || e.Code != "UNAVAILABLE" || e.Text != "Server shutting down" || e.Upstream != "fake" {
		t.Errorf("error = %+v", e)
	}
}

func TestBadGreetings(t *testing.T) {
	for name, script := range map[string][]step{
		"garbage":  {send("hello there")},
		"tagged":   {send("a1 OK hi")},
		"data":     {send("* CAPABILITY IMAP4rev1")},
		"preauth":  {send("* PREAUTH [CAPABILITY IMAP4rev1] welcome")},
		"closed":   {hangup()},
		"partial":  {sendRaw("* OK hel"), hangup()},
		"too long": {send("* OK " + strings.Repeat("x", 70<<10))},
	} {
		t.Run(name, func(t *testing.T) {
			addr := startFake(t, script...)
			_, err := Dial(context.Background(), plainOpts(addr), ClientInfo{})
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			t.Log(err)
		})
	}
}

func TestStall(t *testing.T) {
	t.Run("before greeting", func(t *testing.T) {
		addr := startFake(t, stall())
		start := time.Now()
		_, err := Dial(context.Background(), plainOpts(addr), ClientInfo{})
		checkTimeout(t, err, start)
	})
	t.Run("after greeting", func(t *testing.T) {
		addr := startFake(t, send("* OK hi"), expect("$T CAPABILITY"), stall())
		start := time.Now()
		_, err := Dial(context.Background(), plainOpts(addr), ClientInfo{})
		checkTimeout(t, err, start)
	})
	t.Run("mid login", func(t *testing.T) {
		c := dialFake(t, send("* OK [CAPABILITY IMAP4rev1] hi"), expect(`$T LOGIN "u" "p"`), stall())
		start := time.Now()
		err := c.Login(context.Background(), Credentials{Username: "u", Password: "p"})
		checkTimeout(t, err, start)
		if err := c.Login(context.Background(), Credentials{Username: "u", Password: "p"}); !errors.Is(err, ErrUnavailable) {
			t.Errorf("Login after timeout: %v", err)
		}
	})
	t.Run("mid literal", func(t *testing.T) {
		// The upstream never sends the continuation request.
		c := dialFake(t, send("* OK [CAPABILITY IMAP4rev1] hi"), expect(`$T LOGIN "u" {3}`), stall())
		start := time.Now()
		checkTimeout(t, c.Login(context.Background(), Credentials{Username: "u", Password: "p\\x"}), start)
	})
}

func checkTimeout(t *testing.T, err error, start time.Time) {
	t.Helper()
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want ErrUnavailable and a timeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
	t.Log(err)
}

func TestContextCancel(t *testing.T) {
	c := dialFake(t, send("* OK [CAPABILITY IMAP4rev1] hi"), expect(`$T LOGIN "u" "p"`), stall())
	c.opts.CommandTimeout = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	err := c.Login(ctx, Credentials{Username: "u", Password: "p"})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}

	// Already cancelled before Dial.
	_, err = Dial(ctx, plainOpts("127.0.0.1:1"), ClientInfo{})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Dial with cancelled ctx: %v", err)
	}
}

func TestContextDeadline(t *testing.T) {
	addr := startFake(t, stall())
	opts := plainOpts(addr)
	opts.CommandTimeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, opts, ClientInfo{})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestAuthenticatePlain(t *testing.T) {
	ir := base64.StdEncoding.EncodeToString([]byte("\x00us\u00e9r\x00p\"w"))
	t.Run("SASL-IR", func(t *testing.T) {
		c := dialFake(t,
			send("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN SASL-IR] hi"),
			expect("$T AUTHENTICATE PLAIN "+ir),
			send("$T OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in"))
		if err := c.Login(context.Background(), Credentials{Username: "us\u00e9r", Password: "p\"w"}); err != nil {
			t.Fatal(err)
		}
		if got := c.Capabilities(); !slices.Equal(got, []string{"IMAP4rev1", "IDLE", "MOVE"}) {
			t.Errorf("caps = %q", got)
		}
	})
	t.Run("continuation", func(t *testing.T) {
		c := dialFake(t,
			send("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN] hi"),
			expect("$T AUTHENTICATE PLAIN"),
			send("+ "),
			expect(ir),
			send("$T OK Logged in"),
			expect("$T CAPABILITY"),
			send("* CAPABILITY IMAP4rev1 UIDPLUS"),
			send("$T OK done"))
		if err := c.Login(context.Background(), Credentials{Username: "us\u00e9r", Password: "p\"w"}); err != nil {
			t.Fatal(err)
		}
		if got := c.Capabilities(); !slices.Equal(got, []string{"IMAP4rev1", "UIDPLUS"}) {
			t.Errorf("caps = %q", got)
		}
	})
	t.Run("no PLAIN", func(t *testing.T) {
		c := dialFake(t, send("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=GSSAPI] hi"))
		err := c.Login(context.Background(), Credentials{Username: "u", Password: "p"})
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		c := dialFake(t,
			send("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN SASL-IR] hi"),
			expect("$T AUTHENTICATE PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00u\x00secret"))),
			send("$T NO [AUTHENTICATIONFAILED] wrong: "+base64.StdEncoding.EncodeToString([]byte("\x00u\x00secret"))))
		err := c.Login(context.Background(), Credentials{Username: "u", Password: "secret"})
		if !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("err = %v", err)
		}
		if e := asError(t, err); e.Op != "authenticate" || e.Text != "wrong: ***" {
			t.Errorf("error = %+v", e)
		}
	})
}

func TestLoginRefused(t *testing.T) {
	c := dialFake(t,
		send("* OK [CAPABILITY IMAP4rev1] hi"),
		expect(`$T LOGIN "bob" "hunter22"`),
		send("$T NO [AUTHENTICATIONFAILED] Authentication failed for hunter22"),
		expect(`$T LOGIN "bob" "hunter22"`),
		send("$T NO [UNAVAILABLE] Temporary authentication failure"),
		expect(`$T LOGIN "bob" "hunter22"`),
		send("$T BAD what?"),
		expect(`$T LOGIN "bob" "hunter22"`),
		send("$T OK [CAPABILITY IMAP4rev1] in"))
	cr := Credentials{Username: "bob", Password: "hunter22"}

	err := c.Login(context.Background(), cr)
	if !errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("NO: err = %v, want ErrAuthFailed", err)
	}
	e := asError(t, err)
	if e.Code != "AUTHENTICATIONFAILED" || strings.Contains(e.Error(), "hunter22") {
		t.Errorf("NO: error = %+v", e)
	}

	err = c.Login(context.Background(), cr)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrAuthFailed) {
		t.Fatalf("NO [UNAVAILABLE]: err = %v, want ErrUnavailable", err)
	}
	if e := asError(t, err); e.Code != "UNAVAILABLE" || e.Text != "Temporary authentication failure" {
		t.Errorf("NO [UNAVAILABLE]: error = %+v", e)
	}

	if err := c.Login(context.Background(), cr); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("BAD: err = %v, want ErrUnavailable", err)
	}
	if err := c.Login(context.Background(), cr); err != nil {
		t.Fatalf("final Login: %v", err)
	}
	if err := c.Login(context.Background(), cr); err == nil {
		t.Fatal("second successful Login: no error")
	}
}

func TestByeDuringLogin(t *testing.T) {
	c := dialFake(t,
		send("* OK [CAPABILITY IMAP4rev1] hi"),
		expect(`$T LOGIN "u" "p"`),
		send("* BYE [UNAVAILABLE] Shutting down"),
		hangup())
	err := c.Login(context.Background(), Credentials{Username: "u", Password: "p"})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if e := asError(t, err); e.Text != "Shutting down" || e.Code != "UNAVAILABLE" {
		t.Errorf("error = %+v", e)
	}
}

func TestExplicitCapability(t *testing.T) {
	c := dialFake(t,
		send("* OK ready"),
		expect("$T CAPABILITY"),
		send("* CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN"),
		send("$T OK done"),
		expect(`$T LOGIN "u" "p"`),
		send("$T OK Logged in"),
		expect("$T CAPABILITY"),
		send("* CAPABILITY IMAP4rev1 IDLE"),
		send("$T OK done"))
	if got := c.Capabilities(); !slices.Equal(got, []string{"IMAP4rev1", "STARTTLS", "AUTH=PLAIN"}) {
		t.Errorf("pre-login caps = %q", got)
	}
	if err := c.Login(context.Background(), Credentials{Username: "u", Password: "p"}); err != nil {
		t.Fatal(err)
	}
	if got := c.Capabilities(); !slices.Equal(got, []string{"IMAP4rev1", "IDLE"}) {
		t.Errorf("post-login caps = %q", got)
	}
}

func TestUntaggedCapabilityDuringLogin(t *testing.T) {
	c := dialFake(t,
		send("* OK [CAPABILITY IMAP4rev1] hi"),
		expect(`$T LOGIN "u" "p"`),
		send("* CAPABILITY IMAP4rev1 CHILDREN"),
		send("$T OK Logged in"))
	if err := c.Login(context.Background(), Credentials{Username: "u", Password: "p"}); err != nil {
		t.Fatal(err)
	}
	if got := c.Capabilities(); !slices.Equal(got, []string{"IMAP4rev1", "CHILDREN"}) {
		t.Errorf("caps = %q", got)
	}
}

func TestSendClientIP(t *testing.T) {
	client := ClientInfo{
		Remote: netip.MustParseAddrPort("192.0.2.7:51234"),
		Local:  netip.MustParseAddrPort("[::ffff:198.51.100.1]:993"),
	}
	t.Run("advertised", func(t *testing.T) {
		addr := startFake(t,
			send("* OK [CAPABILITY IMAP4rev1 ID] hi"),
			expect(`$T ID ("x-originating-ip" "192.0.2.7" "x-originating-port" "51234" "x-connected-ip" "198.51.100.1")`),
			// A literal in the ID answer must be skipped, not parsed.
			sendRaw("* ID (\"name\" {9}\r\nFake $T } \"x\" {0}\r\n)\r\n$T OK ID done\r\n"),
			expect(`$T LOGIN "u" "p"`),
			send("$T OK [CAPABILITY IMAP4rev1] in"))
		opts := plainOpts(addr)
		opts.SendClientIP = true
		c, err := Dial(context.Background(), opts, client)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login(context.Background(), Credentials{Username: "u", Password: "p"}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		addr := startFake(t,
			send("* OK [CAPABILITY IMAP4rev1 ID] hi"),
			expect(`$T ID ("x-originating-ip" "192.0.2.7" "x-originating-port" "51234" "x-connected-ip" "198.51.100.1")`),
			send("$T BAD no"),
			expect(`$T LOGIN "u" "p"`),
			send("$T OK [CAPABILITY IMAP4rev1] in"))
		opts := plainOpts(addr)
		opts.SendClientIP = true
		c, err := Dial(context.Background(), opts, client)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login(context.Background(), Credentials{Username: "u", Password: "p"}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("not advertised", func(t *testing.T) {
		addr := startFake(t,
			send("* OK [CAPABILITY IMAP4rev1] hi"),
			expect(`$T LOGIN "u" "p"`),
			send("$T OK [CAPABILITY IMAP4rev1] in"))
		opts := plainOpts(addr)
		opts.SendClientIP = true
		c, err := Dial(context.Background(), opts, client)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login(context.Background(), Credentials{Username: "u", Password: "p"}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestLoginLiterals(t *testing.T) {
	const pass = "p\"a\\ss w\xf6rd"
	lit := "{" + strconv.Itoa(len(pass))
	t.Run("synchronizing", func(t *testing.T) {
		c := dialFake(t,
			send("* OK [CAPABILITY IMAP4rev1] hi"),
			expect(`$T LOGIN "u" `+lit+"}"),
			send("+ go ahead"),
			expect(pass),
			send("$T OK [CAPABILITY IMAP4rev1] in"))
		if err := c.Login(context.Background(), Credentials{Username: "u", Password: pass}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("both synchronizing", func(t *testing.T) {
		c := dialFake(t,
			send("* OK [CAPABILITY IMAP4rev1] hi"),
			expect(`$T LOGIN {2}`),
			send("+ go ahead"),
			expect("\xfcu "+lit+"}"),
			send("* OK unrelated untagged"),
			send("+ go ahead"),
			expect(pass),
			send("$T OK [CAPABILITY IMAP4rev1] in"))
		if err := c.Login(context.Background(), Credentials{Username: "\xfcu", Password: pass}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("literal refused", func(t *testing.T) {
		c := dialFake(t,
			send("* OK [CAPABILITY IMAP4rev1] hi"),
			expect(`$T LOGIN "u" `+lit+"}"),
			send("$T NO [CANNOT] no literals here"))
		if err := c.Login(context.Background(), Credentials{Username: "u", Password: pass}); !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("LITERAL+", func(t *testing.T) {
		c := dialFake(t,
			send("* OK [CAPABILITY IMAP4rev1 LITERAL+] hi"),
			expect(`$T LOGIN "u" `+lit+"+}"),
			expect(pass),
			send("$T OK [CAPABILITY IMAP4rev1] in"))
		if err := c.Login(context.Background(), Credentials{Username: "u", Password: pass}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("NUL", func(t *testing.T) {
		c := dialFake(t, send("* OK [CAPABILITY IMAP4rev1] hi"))
		if err := c.Login(context.Background(), Credentials{Username: "u", Password: "a\x00b"}); !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestDetachLeftover(t *testing.T) {
	const after = "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n"
	c := dialFake(t,
		send("* OK [CAPABILITY IMAP4rev1] hi"),
		expect(`$T LOGIN "u" "p"`),
		sendRaw("$T OK [CAPABILITY IMAP4rev1] in\r\n"+after),
		expect("z NOOP"),
		send("z OK relayed"))
	if err := c.Login(context.Background(), Credentials{Username: "u", Password: "p"}); err != nil {
		t.Fatal(err)
	}
	conn, rest := c.Detach()
	defer conn.Close()
	if err := c.Close(); err != nil {
		t.Errorf("Close after Detach: %v", err)
	}
	if _, err := conn.Write([]byte("z NOOP\r\n")); err != nil {
		t.Fatal(err)
	}
	want := after + "z OK relayed\r\n"
	got := make([]byte, len(want)-len(rest))
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatalf("read after Detach (leftover %q): %v", rest, err)
	}
	if s := string(rest) + string(got); s != want {
		t.Errorf("leftover + read = %q, want %q", s, want)
	}
}

func TestStartTLSInjection(t *testing.T) {
	addr := startFake(t,
		send("* OK [CAPABILITY IMAP4rev1 STARTTLS] hi"),
		expect("$T STARTTLS"),
		sendRaw("$T OK begin TLS\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"))
	opts := plainOpts(addr)
	opts.TLS = TLSStartTLS
	_, err := Dial(context.Background(), opts, ClientInfo{})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "cleartext data") {
		t.Fatalf("err = %v", err)
	}
}

func TestStartTLSRefused(t *testing.T) {
	addr := startFake(t,
		send("* OK [CAPABILITY IMAP4rev1] hi"),
		expect("$T STARTTLS"),
		send("$T BAD unknown command"))
	opts := plainOpts(addr)
	opts.TLS = TLSStartTLS
	_, err := Dial(context.Background(), opts, ClientInfo{})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if e := asError(t, err); e.Op != "starttls" || e.Text != "unknown command" {
		t.Errorf("error = %+v", e)
	}
}

func TestDialRefused(t *testing.T) {
	_, err := Dial(context.Background(), plainOpts("127.0.0.1:1"), ClientInfo{})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if e := asError(t, err); e.Op != "dial" {
		t.Errorf("op = %q", e.Op)
	}
}

func TestAuthenticateXOAUTH2(t *testing.T) {
	ir := base64.StdEncoding.EncodeToString([]byte("user=u@example.com\x01auth=Bearer tok-123\x01\x01"))
	cr := Credentials{Username: "u@example.com", Password: "tok-123", XOAUTH2: true}
	t.Run("SASL-IR", func(t *testing.T) {
		c := dialFake(t,
			send("* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR] hi"),
			expect("$T AUTHENTICATE XOAUTH2 "+ir),
			send("$T OK [CAPABILITY IMAP4rev1 IDLE] Logged in"))
		if err := c.Login(context.Background(), cr); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("continuation", func(t *testing.T) {
		c := dialFake(t,
			send("* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] hi"),
			expect("$T AUTHENTICATE XOAUTH2"),
			send("+ "),
			expect(ir),
			send("$T OK [CAPABILITY IMAP4rev1] Logged in"))
		if err := c.Login(context.Background(), cr); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("refused with error challenge", func(t *testing.T) {
		c := dialFake(t,
			send("* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR] hi"),
			expect("$T AUTHENTICATE XOAUTH2 "+ir),
			send("+ eyJzdGF0dXMiOiI0MDEifQ=="),
			expect(""),
			send("$T NO [AUTHENTICATIONFAILED] Invalid credentials"))
		err := c.Login(context.Background(), cr)
		if !errors.Is(err, ErrAuthFailed) || strings.Contains(err.Error(), "tok-123") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("not offered", func(t *testing.T) {
		c := dialFake(t, send("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi"))
		if err := c.Login(context.Background(), cr); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v", err)
		}
	})
}
