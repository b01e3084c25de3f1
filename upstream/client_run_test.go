package upstream

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// runSource is a source whose INBOX has UIDs 42, 50 and 44 at sequence
// numbers 2, 3 and 4, fetched in one run; last is the reply for 4.
func runSource(t *testing.T, last string) *Client {
	src := dialT(t, fakeAccount(startFake(t, script(fakeLogin(fakeCaps), []step{
		expect("$T SELECT INBOX"), send("* 4 EXISTS"), send("* OK [UIDVALIDITY 7] ok"), send("$T OK [READ-WRITE] done"),
		expect("$T FETCH 2:4 (UID BODY.PEEK[])"),
		sendRaw("* 2 FETCH (UID 42 BODY[] {5}\r\nhello)\r\n* 3 FETCH (UID 50 BODY[] {5}\r\nwrong)\r\n" +
			last + "$T OK done\r\n"),
		stall(),
	})...), 5*time.Second))
	if _, err := src.Select(context.Background(), "INBOX", false); err != nil {
		t.Fatal(err)
	}
	return src
}

// runLog records an AppendRunFrom's hooks.
type runLog struct {
	begun []int
	done  []imap.UID
	flags []imap.Flag
}

func (l *runLog) hooks() RunHooks {
	return RunHooks{
		Begin: func(i int) (*imap.AppendOptions, error) {
			l.begun = append(l.begun, i)
			return &imap.AppendOptions{Flags: l.flags}, nil
		},
		Done: func(i int, res AppendResult) error {
			if i != l.begun[len(l.begun)-1] {
				return errors.New("Done for another message than the last begun")
			}
			l.done = append(l.done, res.UID)
			return nil
		},
	}
}

// runItems are what the runs ask for: 43 is not at 3 as believed.
var runItems = []RunItem{{UID: 42, Seq: 2}, {UID: 43, Seq: 3}, {UID: 44, Seq: 4}}

// TestAppendRunFrom: one FETCH feeds an APPEND per message, each answered
// before the next, with Begin's options; a message whose sequence number
// shows another UID is skipped.
func TestAppendRunFrom(t *testing.T) {
	src := runSource(t, "* 4 FETCH (UID 44 BODY[] {5}\r\nworld)\r\n")
	dst := dialT(t, fakeAccount(startFake(t, script(fakeLogin(fakeCaps), []step{
		expect(`$T APPEND INBOX (\Seen) {5}`), send("+ go"), expect("hello"), send("$T OK [APPENDUID 9 7] done"),
		expect(`$T APPEND INBOX (\Seen) {5}`), send("+ go"), expect("world"), send("$T OK [APPENDUID 9 8] done"),
		stall(),
	})...), 5*time.Second))
	l := runLog{flags: []imap.Flag{imap.FlagSeen}}
	if err := dst.AppendRunFrom(context.Background(), "INBOX", src, runItems, l.hooks()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l.begun, []int{0, 2}) || !slices.Equal(l.done, []imap.UID{7, 8}) {
		t.Errorf("begun %v, done %v; want [0 2] and [7 8]", l.begun, l.done)
	}
	if src.Broken() || dst.Broken() {
		t.Errorf("broken: source %v, target %v", src.Broken(), dst.Broken())
	}
}

// TestAppendRunFromBodyBeforeUID: a body that comes before its UID ends
// the run with ErrBodyBeforeUID, unused, and the source is closed.
func TestAppendRunFromBodyBeforeUID(t *testing.T) {
	src := runSource(t, "* 4 FETCH (BODY[] {5}\r\nworld UID 44)\r\n")
	dst := dialT(t, fakeAccount(startFake(t, script(fakeLogin(fakeCaps), []step{
		expect("$T APPEND INBOX {5}"), send("+ go"), expect("hello"), send("$T OK [APPENDUID 9 7] done"),
		stall(),
	})...), 5*time.Second))
	var l runLog
	err := dst.AppendRunFrom(context.Background(), "INBOX", src, runItems, l.hooks())
	if !errors.Is(err, ErrBodyBeforeUID) {
		t.Errorf("AppendRunFrom: %v; want ErrBodyBeforeUID", err)
	}
	if !slices.Equal(l.begun, []int{0}) || !slices.Equal(l.done, []imap.UID{7}) {
		t.Errorf("begun %v, done %v; want [0] and [7]", l.begun, l.done)
	}
	if !src.Broken() {
		t.Error("the source's connection was left open in the middle of the run")
	}
}

// TestAppendRunFromTargetRefuses: the target's NO ends the run with that
// error, Done is not called for the refused message, and the source,
// whose reply is abandoned, is closed.
func TestAppendRunFromTargetRefuses(t *testing.T) {
	src := runSource(t, "* 4 FETCH (UID 44 BODY[] {5}\r\nworld)\r\n")
	dst := dialT(t, fakeAccount(startFake(t, script(fakeLogin(fakeCaps), []step{
		expect("$T APPEND INBOX {5}"), send("+ go"), expect("hello"), send("$T NO [OVERQUOTA] full"),
		stall(),
	})...), 5*time.Second))
	var l runLog
	err := dst.AppendRunFrom(context.Background(), "INBOX", src, runItems, l.hooks())
	if ie, ok := errors.AsType[*imap.Error](err); !ok || ie.Code != imap.ResponseCodeOverQuota {
		t.Errorf("AppendRunFrom: %v; want the target's NO [OVERQUOTA]", err)
	}
	if !slices.Equal(l.begun, []int{0}) || len(l.done) != 0 {
		t.Errorf("begun %v, done %v; want [0] and none", l.begun, l.done)
	}
	if !src.Broken() || dst.Broken() {
		t.Errorf("broken: source %v, target %v; want true, false", src.Broken(), dst.Broken())
	}
}

// TestAppendRunFromRefused: a source that refuses the FETCH (a sequence
// number beyond the mailbox, after another client's expunge) leaves
// every item to the caller, its connection usable.
func TestAppendRunFromRefused(t *testing.T) {
	src := dialT(t, fakeAccount(startFake(t, script(fakeLogin(fakeCaps), []step{
		expect("$T SELECT INBOX"), send("* 2 EXISTS"), send("* OK [UIDVALIDITY 7] ok"), send("$T OK [READ-WRITE] done"),
		expect("$T FETCH 2:4 (UID BODY.PEEK[])"), send("$T BAD Error in IMAP command FETCH: Invalid messageset"),
		stall(),
	})...), 5*time.Second))
	if _, err := src.Select(context.Background(), "INBOX", false); err != nil {
		t.Fatal(err)
	}
	dst := dialT(t, fakeAccount(startFake(t, script(fakeLogin(fakeCaps), []step{stall()})...), 5*time.Second))
	var l runLog
	if err := dst.AppendRunFrom(context.Background(), "INBOX", src, runItems, l.hooks()); err != nil {
		t.Fatalf("AppendRunFrom: %v", err)
	}
	if len(l.begun) != 0 || src.Broken() || dst.Broken() {
		t.Errorf("begun %v; broken: source %v, target %v", l.begun, src.Broken(), dst.Broken())
	}
}
