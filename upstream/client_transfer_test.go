package upstream

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// TestAppendFromOutcomeUnknown checks that AppendFrom says when an APPEND
// failed after its whole literal was sent (the target may have stored
// the message) and only then.
func TestAppendFromOutcomeUnknown(t *testing.T) {
	tests := []struct {
		name    string
		target  []step
		unknown bool
	}{
		{"target hangs up after the literal", []step{
			expect("$T APPEND INBOX {5}"), send("+ go"), expect("hello"), hangup(),
		}, true},
		{"target stalls after the literal", []step{
			expect("$T APPEND INBOX {5}"), send("+ go"), expect("hello"), stall(),
		}, true},
		{"target answers NO", []step{
			expect("$T APPEND INBOX {5}"), send("+ go"), expect("hello"), send("$T NO [OVERQUOTA] full"), stall(),
		}, false},
		{"target hangs up before the literal", []step{
			expect("$T APPEND INBOX {5}"), hangup(),
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := dialT(t, fakeAccount(startFake(t, script(fakeLogin(fakeCaps), fetchScript(), []step{
				sendRaw("* 2 FETCH (UID 42 BODY[] {5}\r\nhello)\r\n$T OK done\r\n"), stall(),
			})...), 5*time.Second))
			dst := dialT(t, fakeAccount(startFake(t, script(fakeLogin(fakeCaps), tt.target)...), time.Second))
			ctx := context.Background()
			if _, err := src.Select(ctx, "INBOX", false); err != nil {
				t.Fatal(err)
			}
			_, err := dst.AppendFrom(ctx, "INBOX", &imap.AppendOptions{}, src, 42)
			if err == nil {
				t.Fatal("AppendFrom succeeded")
			}
			if errors.Is(err, ErrAppendUnknown) != tt.unknown {
				t.Errorf("AppendFrom: %v; ErrAppendUnknown %v, want %v", err, errors.Is(err, ErrAppendUnknown), tt.unknown)
			}
		})
	}
}

// TestAppendFromSeqHint: with the right sequence number the body is
// fetched without a SEARCH; with a wrong one (another UID answers) it is
// looked up and fetched again, and nothing of the other message is
// appended.
func TestAppendFromSeqHint(t *testing.T) {
	appended := []step{
		expect("$T APPEND INBOX {5}"), send("+ go"), expect("hello"),
		send("$T OK [APPENDUID 9 7] done"), stall(),
	}
	selectInbox := []step{
		expect("$T SELECT INBOX"), send("* 3 EXISTS"), send("* OK [UIDVALIDITY 7] ok"), send("$T OK [READ-WRITE] done"),
	}
	tests := []struct {
		name   string
		source []step
	}{
		{"right hint", []step{
			expect("$T FETCH 2 (UID BODY.PEEK[])"),
			sendRaw("* 2 FETCH (UID 42 BODY[] {5}\r\nhello)\r\n$T OK done\r\n"), stall(),
		}},
		{"wrong hint", []step{
			expect("$T FETCH 2 (UID BODY.PEEK[])"),
			sendRaw("* 2 FETCH (UID 41 BODY[] {5}\r\nwrong)\r\n$T OK done\r\n"),
			expect("$T SEARCH UID 42"), send("* SEARCH 3"), send("$T OK done"),
			expect("$T FETCH 3 (UID BODY.PEEK[])"),
			sendRaw("* 3 FETCH (UID 42 BODY[] {5}\r\nhello)\r\n$T OK done\r\n"), stall(),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := dialT(t, fakeAccount(startFake(t, script(fakeLogin(fakeCaps), selectInbox, tt.source)...), 5*time.Second))
			dst := dialT(t, fakeAccount(startFake(t, script(fakeLogin(fakeCaps), appended)...), 5*time.Second))
			ctx := context.Background()
			if _, err := src.Select(ctx, "INBOX", false); err != nil {
				t.Fatal(err)
			}
			res, err := dst.AppendFromSeq(ctx, "INBOX", &imap.AppendOptions{}, src, 42, 2)
			if err != nil || res.UID != 7 || res.UIDValidity != 9 {
				t.Fatalf("AppendFromSeq: %+v %v", res, err)
			}
		})
	}
}

// TestAppendFromSourceCut: a source that hangs up in the middle of the
// body literal (imapclient reads that as the literal's end) must not
// produce an APPEND: the target's connection is closed before the
// literal is finished, and the error is the source's, not an APPEND of
// unknown outcome.
func TestAppendFromSourceCut(t *testing.T) {
	src := dialT(t, fakeAccount(startFake(t, script(fakeLogin(fakeCaps), fetchScript(), []step{
		sendRaw("* 2 FETCH (UID 42 BODY[] {10}\r\nhello"), hangup(),
	})...), 5*time.Second))
	dst := dialT(t, fakeAccount(startFake(t, script(fakeLogin(fakeCaps), []step{
		expect("$T APPEND INBOX {10}"), send("+ go"), stall(),
	})...), 5*time.Second))
	ctx := context.Background()
	if _, err := src.Select(ctx, "INBOX", false); err != nil {
		t.Fatal(err)
	}
	_, err := dst.AppendFrom(ctx, "INBOX", &imap.AppendOptions{}, src, 42)
	if !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrAppendUnknown) {
		t.Errorf("AppendFrom: %v; want the source's unexpected EOF", err)
	}
	if !dst.Broken() {
		t.Error("the target's connection is still open, in the middle of a literal")
	}
}
