package merge

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"imapproxy/internal/dovecot"
	"imapproxy/upstream"
)

// TestSyncSourceSinceDovecot checks the quick syncs against a real
// Dovecot, which has CONDSTORE: an unchanged mailbox is Unchanged after
// one EXAMINE, a flag changed by another client comes as FlagsOnly with
// just that message, and a new or expunged message makes a full sync
// that agrees with the store.
func TestSyncSourceSinceDovecot(t *testing.T) {
	d := dovecot.StartT(t, dovecot.Options{})
	var msgs [][]byte
	for i := range 5 {
		msgs = append(msgs, fmt.Appendf(nil, "Message-ID: <q%d@example.com>\r\nSubject: quick %d\r\n\r\nbody %d\r\n", i, i, i))
	}
	if err := d.Deliver("alice", "INBOX", msgs...); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	o := upstream.AccountOptions{
		Options:     upstream.Options{Address: d.TLSAddr, TLS: upstream.TLSImplicit, TLSConfig: d.TLSConfig()},
		Credentials: upstream.Credentials{Username: "alice", Password: "alicepw"},
	}
	c, err := upstream.DialClient(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.Caps().Has(imap.CapCondStore) {
		t.Fatal("Dovecot without CONDSTORE")
	}
	other, err := imapclient.DialTLS(d.TLSAddr, &imapclient.Options{TLSConfig: d.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Login("alice", "alicepw").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	st, vm := openStore(t)
	sync := func(since *SyncMark) SyncResult {
		t.Helper()
		res, err := SyncSourceSince(ctx, st, vm, "acct", c, "INBOX", since)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	full := sync(nil)
	if full.Unchanged || full.FlagsOnly || len(full.Messages) != 5 || !full.Mark.usable() {
		t.Fatalf("first sync: %+v", full)
	}
	checkStore(t, st, vm, "INBOX", full)
	if r := sync(&full.Mark); !r.Unchanged || len(r.Messages) != 0 || r.Mark != full.Mark {
		t.Fatalf("sync of an unchanged mailbox: %+v", r)
	}

	// A flag set by another client: only that message.
	flagged := full.Messages[2].UID
	if err := other.Store(imap.UIDSetNum(flagged), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	r := sync(&full.Mark)
	if !r.FlagsOnly || len(r.Changed) != 1 || r.Changed[0].UID != flagged || !slices.Contains(r.Changed[0].Flags, imap.FlagFlagged) {
		t.Fatalf("sync after a flag change: %+v", r)
	}
	if r.Mark.HighestModSeq <= full.Mark.HighestModSeq {
		t.Errorf("HIGHESTMODSEQ did not grow: %d then %d", full.Mark.HighestModSeq, r.Mark.HighestModSeq)
	}
	mark := r.Mark

	// A new message and an expunged one: a full sync.
	if err := d.Deliver("alice", "INBOX", []byte("Message-ID: <q9@example.com>\r\nSubject: new\r\n\r\nnew\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := other.Store(imap.UIDSetNum(full.Messages[0].UID), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := other.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	r = sync(&mark)
	if r.Unchanged || r.FlagsOnly || len(r.Messages) != 5 || len(r.Added) != 1 || !slices.Equal(r.Removed, []uint32{full.Messages[0].VUID}) {
		t.Fatalf("sync after a delivery and an expunge: %+v", r)
	}
	checkStore(t, st, vm, "INBOX", r)
}
