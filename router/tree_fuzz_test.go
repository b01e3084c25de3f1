package router

import (
	"errors"
	"strings"
	"testing"
)

// FuzzTreeRoundTrip checks, on the test trees and any names, that the tree
// never panics, that a shown upstream name resolves back to the same
// account and mailbox, that Create agrees with Resolve, and that a name
// Resolve maps to an account folder is that folder's name (up to the case
// of the parts the tree matches without case).
func FuzzTreeRoundTrip(f *testing.F) {
	for _, seed := range []string{"INBOX", "inbox", "INBOX.Sent", "Sent", "Lists/golang", "INBOX.Lists.golang",
		"Work", "Work/Sent", "Home/a/b", "INBOX.INBOX", "a..b", "a/b", "Sent/2023", "Old ISP/x", "Ä/☀", "", "/", "INBOX."} {
		f.Add(uint8(0), uint8(0), seed)
		f.Add(uint8(1), uint8(2), seed)
		f.Add(uint8(2), uint8(0), seed)
	}
	tr := testTrees(f)
	all := []*Tree{tr.plain, tr.merged, tr.cyrus, tr.unified}
	f.Fuzz(func(t *testing.T, treeIdx, accountIdx uint8, name string) {
		tree := all[int(treeIdx)%len(all)]
		account := tree.accounts[int(accountIdx)%len(tree.accounts)].Name

		if v, ok := tree.VirtualName(account, name); ok {
			want := Source{account, name}
			if isInbox(name) {
				want.Mailbox = inbox
			}
			tgt, err := tree.Resolve(v)
			if err != nil || tgt.Unified || tgt.NoSelect || tgt.Account != account || len(tgt.Sources) != 1 || tgt.Sources[0] != want {
				t.Fatalf("VirtualName(%q, %q) = %q; Resolve: %+v, %v", account, name, v, tgt, err)
			}
		}

		// name as a virtual name.
		tgt, err := tree.Resolve(name)
		var te *TreeError
		if err != nil && (!errors.As(err, &te) || te.Text == "") {
			t.Fatalf("Resolve(%q): %v is not a *TreeError", name, err)
		}
		if err == nil && !tgt.Unified && !tgt.NoSelect && !isInbox(name) {
			s := tgt.Sources[0]
			if v, ok := tree.VirtualName(s.Account, s.Mailbox); !ok || !strings.EqualFold(v, name) {
				t.Fatalf("Resolve(%q) = %+v; VirtualName gives %q, %v", name, tgt, v, ok)
			}
		}
		if src, err := tree.Create(name); err == nil {
			if tgt, rerr := tree.Resolve(name); rerr != nil || len(tgt.Sources) != 1 || tgt.Sources[0] != src {
				t.Fatalf("Create(%q) = %v; Resolve: %+v, %v", name, src, tgt, rerr)
			}
		} else if !errors.As(err, &te) {
			t.Fatalf("Create(%q): %v is not a *TreeError", name, err)
		}
		tree.Rename(name, name+"x")
		tree.Rename("Work/x", name)
	})
}
