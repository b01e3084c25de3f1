package merge

import (
	"errors"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"imapproxy/store"
)

// TestHubRecoversTransfers: a MOVE across accounts that "crashed" after
// its APPEND leaves a journal row; the user's next hub settles it when it
// starts, and the message is in exactly one place.
func TestHubRecoversTransfers(t *testing.T) {
	e := newTransferEnv(t, transferCaps, transferCaps)
	msgs := genMessages(rand.New(rand.NewPCG(3, 4)), 3, 4<<10)
	fill(t, e.src, "INBOX", msgs)
	eng := e.engine(e.st)
	eng.fault = func(step string) error {
		if step == "appended" {
			return errors.New("simulated crash")
		}
		return nil
	}
	uids := uidsOf(t, e.src, "INBOX")
	eng.Run(t.Context(), TransferRequest{Kind: store.TransferMove, SrcAccount: "src", SrcMailbox: "INBOX",
		UIDs: uids[:1], DstAccount: "dst", DstMailbox: "Archive"})
	if len(unfinished(t, e.st)) == 0 {
		t.Fatal("the simulated crash left no unfinished transfer")
	}

	so, do := e.src.account(), e.dst.account()
	so.Name, do.Name = "src", "dst"
	m := NewManager(ManagerOptions{Store: e.st, Logger: slog.New(slog.NewTextHandler(tLogWriter{t}, nil)), WatchInterval: time.Second})
	t.Cleanup(m.Close)
	spec := UserSpec{User: "alice", Accounts: []AccountSpec{
		{Name: "src", Prefix: "Src", Options: so},
		{Name: "dst", Prefix: "Dst", Options: do},
	}, DefaultAccount: "src"}
	h, sub, err := m.Attach(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Detach(sub)
	deadline := time.Now().Add(10 * time.Second)
	for len(unfinished(t, e.st)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("unfinished after the hub started: %+v", unfinished(t, e.st))
		}
		time.Sleep(50 * time.Millisecond)
	}
	both := sumKeys(contents(t, e.src.dial(), "INBOX"), contents(t, e.dst.dial(), "Archive"))
	if d := diffKeys(both, wantKeys(msgs)); d != "" {
		t.Fatalf("after recovery: %s", d)
	}
}
