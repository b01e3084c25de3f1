package merge

import (
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestSessionSubscriptions: SUBSCRIBE and UNSUBSCRIBE reach the account's
// upstream, and LSUB and LIST (SUBSCRIBED) show the upstreams'
// subscriptions (where they can say, with LIST-EXTENDED), the unified
// INBOX and the account prefixes always.
func TestSessionSubscriptions(t *testing.T) {
	caps := imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}, imap.CapListExtended: {}}
	workMem, homeMem := startFakeMem(t, caps, nil, nil), startFakeMem(t, caps, nil, nil)
	if err := workMem.user.Create("Projects", nil); err != nil {
		t.Fatal(err)
	}
	if err := homeMem.user.Create("Lists", nil); err != nil {
		t.Fatal(err)
	}
	_, c := fakeEnv(t, workMem.memUpstream, homeMem.memUpstream, 0).serve(nil)
	subscribed := func() []string {
		t.Helper()
		l, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range l {
			if !slices.Contains(d.Attrs, imap.MailboxAttrSubscribed) {
				t.Errorf("LIST (SUBSCRIBED) gave %s without \\Subscribed", d.Mailbox)
			}
			out = append(out, d.Mailbox)
		}
		slices.Sort(out)
		return out
	}
	if got, want := subscribed(), []string{"Home", "INBOX", "Work"}; !slices.Equal(got, want) {
		t.Errorf("subscribed at first: %v, want %v", got, want)
	}
	if err := c.Subscribe("Work/Projects").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe("Home/Lists").Wait(); err != nil {
		t.Fatal(err)
	}
	if got, want := subscribed(), []string{"Home", "Home/Lists", "INBOX", "Work", "Work/Projects"}; !slices.Equal(got, want) {
		t.Errorf("subscribed after SUBSCRIBE: %v, want %v", got, want)
	}
	if err := c.Unsubscribe("Home/Lists").Wait(); err != nil {
		t.Fatal(err)
	}
	if got, want := subscribed(), []string{"Home", "INBOX", "Work", "Work/Projects"}; !slices.Equal(got, want) {
		t.Errorf("subscribed after UNSUBSCRIBE: %v, want %v", got, want)
	}
	// A plain LIST still lists everything, \Subscribed only with RETURN.
	l, err := c.List("", "*", &imap.ListOptions{ReturnSubscribed: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range l {
		want := d.Mailbox == "Work/Projects" || d.Mailbox == "INBOX" || d.Mailbox == "Work" || d.Mailbox == "Home"
		if slices.Contains(d.Attrs, imap.MailboxAttrSubscribed) != want {
			t.Errorf("LIST RETURN (SUBSCRIBED): %s attrs %v", d.Mailbox, d.Attrs)
		}
	}
	if len(l) < 6 {
		t.Errorf("LIST RETURN (SUBSCRIBED) listed %d folders", len(l))
	}
}
