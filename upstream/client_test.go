package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// memAccount starts a memory upstream in mode and returns options that
// log in to it.
func memAccount(t *testing.T, mode TLSMode) AccountOptions {
	t.Helper()
	addr, pool := startMem(t, mode)
	return AccountOptions{
		Options: Options{
			Name:           "mem",
			Address:        addr,
			TLS:            mode,
			TLSConfig:      &tls.Config{RootCAs: pool},
			CommandTimeout: 5 * time.Second,
		},
		Credentials: Credentials{Username: memUser, Password: memPassword},
	}
}

func dialT(t *testing.T, o AccountOptions) *Client {
	t.Helper()
	c, err := DialClient(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// appendMsg appends body to mailbox through Do.
func appendMsg(t *testing.T, c *Client, mailbox string, body []byte, flags ...imap.Flag) imap.UID {
	t.Helper()
	var uid imap.UID
	err := c.Do(context.Background(), func(ic *imapclient.Client) error {
		cmd := ic.Append(mailbox, int64(len(body)), &imap.AppendOptions{Flags: flags})
		if _, err := cmd.Write(body); err != nil {
			return err
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		data, err := cmd.Wait()
		if data != nil {
			uid = data.UID
		}
		return err
	})
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return uid
}

func testMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.org\r\nTo: b@example.org\r\nSubject: test\r\n\r\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "line %d of the body, some filler text to make it long\r\n", i)
	}
	return b.Bytes()
}

func TestClientMem(t *testing.T) {
	for _, mode := range []TLSMode{TLSNone, TLSImplicit, TLSStartTLS} {
		t.Run(mode.String(), func(t *testing.T) {
			o := memAccount(t, mode)
			ctx := context.Background()

			bad := o
			bad.Password = "wrong"
			if _, err := DialClient(ctx, bad); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("wrong password: %v, want ErrAuthFailed", err)
			} else if strings.Contains(err.Error(), "wrong") {
				t.Errorf("error shows the password: %v", err)
			}

			c := dialT(t, o)
			if !c.Caps().Has(imap.CapIdle) || c.Caps().Has(imap.CapLoginDisabled) {
				t.Errorf("caps = %v, want post-login ones", c.Caps())
			}
			if c.Delimiter() != "/" || c.PersonalPrefix() != "" {
				t.Errorf("delimiter %q prefix %q", c.Delimiter(), c.PersonalPrefix())
			}

			if err := c.Do(ctx, func(ic *imapclient.Client) error { return ic.Create("Archive", nil).Wait() }); err != nil {
				t.Fatal(err)
			}
			l, err := c.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, d := range l {
				names = append(names, d.Mailbox)
			}
			slices.Sort(names)
			if !slices.Equal(names, []string{"Archive", "INBOX"}) {
				t.Errorf("LIST = %q", names)
			}

			small := testMessage(100)
			big := testMessage(300 << 10)
			u1 := appendMsg(t, c, "INBOX", small, imap.FlagSeen)
			u2 := appendMsg(t, c, "INBOX", big, imap.FlagFlagged, "$custom")

			if _, err := c.Select(ctx, "Nope", false); err == nil || errors.Is(err, ErrUnavailable) || c.Broken() {
				t.Errorf("SELECT of a missing mailbox: %v (broken %v)", err, c.Broken())
			}
			sd, err := c.Select(ctx, "INBOX", true)
			if err != nil {
				t.Fatal(err)
			}
			if sd.NumMessages != 2 || sd.UIDValidity == 0 {
				t.Errorf("select data %+v", sd)
			}

			var set imap.UIDSet
			set.AddNum(u1, u2, 999)
			fl, err := c.FetchFlags(ctx, set)
			if err != nil {
				t.Fatal(err)
			}
			if len(fl) != 2 || fl[0].UID != u1 || fl[1].UID != u2 ||
				!slices.Contains(fl[0].Flags, imap.FlagSeen) || !slices.Contains(fl[1].Flags, "$custom") {
				t.Errorf("flags = %+v", fl)
			}

			var buf bytes.Buffer
			n, err := c.FetchRaw(ctx, u2, &buf)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(big)) || !bytes.Equal(buf.Bytes(), big) {
				t.Errorf("FetchRaw: %d bytes, equal %v", n, bytes.Equal(buf.Bytes(), big))
			}
			// BODY.PEEK: u2 stays unseen.
			fl, err = c.FetchFlags(ctx, imap.UIDSetNum(u2))
			if err != nil || len(fl) != 1 || slices.Contains(fl[0].Flags, imap.FlagSeen) {
				t.Errorf("flags after FetchRaw = %+v, %v", fl, err)
			}
			if _, err := c.FetchRaw(ctx, 999, &buf); !errors.Is(err, ErrNoMessage) || c.Broken() {
				t.Errorf("FetchRaw of a missing UID: %v", err)
			}
			// A failing writer fails FetchRaw but not the Client.
			if _, err := c.FetchRaw(ctx, u2, failWriter{}); err == nil || errors.Is(err, ErrUnavailable) || c.Broken() {
				t.Errorf("FetchRaw into a failing writer: %v (broken %v)", err, c.Broken())
			}
			if err := c.Noop(ctx); err != nil {
				t.Errorf("NOOP after a failed write: %v", err)
			}
			if err := c.Close(); err != nil || !c.Broken() {
				t.Errorf("Close: %v, broken %v", err, c.Broken())
			}
			if err := c.Noop(ctx); !errors.Is(err, ErrUnavailable) {
				t.Errorf("NOOP after Close: %v", err)
			}
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestClientMemLoginDisabled(t *testing.T) {
	o := memAccount(t, TLSStartTLS)
	o.TLS = TLSNone // cleartext: LOGINDISABLED and no AUTH=PLAIN
	_, err := DialClient(context.Background(), o)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "LOGINDISABLED") {
		t.Fatalf("err = %v", err)
	}
}

func TestClientMemIdle(t *testing.T) {
	o := memAccount(t, TLSNone)
	var mu sync.Mutex
	var exists []uint32
	got := make(chan struct{}, 10)
	o.Unilateral = &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				mu.Lock()
				exists = append(exists, *d.NumMessages)
				mu.Unlock()
				got <- struct{}{}
			}
		},
	}
	watcher := dialT(t, o)
	o.Unilateral = nil
	writer := dialT(t, o)
	ctx := context.Background()
	if _, err := watcher.Select(ctx, "INBOX", true); err != nil {
		t.Fatal(err)
	}
	ictx, cancel := context.WithCancel(ctx)
	idled := make(chan error, 1)
	go func() { idled <- watcher.Idle(ictx, time.Minute) }()
	time.Sleep(100 * time.Millisecond) // let IDLE start
	appendMsg(t, writer, "INBOX", testMessage(50))
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Error("no EXISTS while idling")
	}
	cancel()
	if err := <-idled; err != nil {
		t.Fatalf("Idle: %v", err)
	}
	mu.Lock()
	if !slices.Contains(exists, 1) {
		t.Errorf("EXISTS seen: %v", exists)
	}
	mu.Unlock()
	if err := watcher.Noop(ctx); err != nil || watcher.Broken() {
		t.Errorf("after IDLE: %v", err)
	}
}
