package merge

// This file builds a user's folder tree from the accounts' namespaces and
// lists the virtual folders. Both do their upstream I/O on the caller's
// goroutine; the hub goroutine only keeps what was learned.

import (
	"context"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"

	"imapproxy/config"
	"imapproxy/router"
)

// Tree returns the user's folder tree. It is built from each account's
// hierarchy delimiter and personal namespace, learned once from a pooled
// client. An account that cannot be reached stays mounted (so that its
// prefix keeps shadowing the primary account's folders of that name and
// the INBOX stays where it is). Its namespace is the one saved with its
// folders by an earlier hub (hub_saved.go); if none was, a guessed one
// ("/", none) until it is learned: its folders are missing from List and
// its mailboxes fail to sync, the error is logged, and the next call
// tries again and then returns a new tree. Trees are immutable: callers keep
// the one they got for one command.
func (h *Hub) Tree(ctx context.Context) (*router.Tree, error) {
	t, _, err := h.tree(ctx)
	return t, err
}

// tree is Tree that also returns the names of the accounts whose
// namespace is known (those that can be listed).
func (h *Hub) tree(ctx context.Context) (*router.Tree, []string, error) {
	reply := make(chan treeState, 1)
	ts, err := call(ctx, h, treeEvent{reply: reply}, reply)
	if err != nil {
		return nil, nil, err
	}
	var learned []router.TreeAccount
	for _, a := range ts.missing {
		pool := h.pools[a.Name]
		c, err := pool.Get(ctx)
		if err != nil {
			// The namespace saved with the folders stands in until the
			// hub ends (it changes only when the account moves server).
			if sf, ok := h.loadFolders(ctx, a.Name); ok {
				h.log.Warn("account unreachable, its folders as last seen are shown", "account", a.Name, "err", err)
				learned = append(learned, router.TreeAccount{Name: a.Name, Prefix: a.Prefix, Delimiter: sf.Delimiter, Personal: sf.Personal})
				continue
			}
			h.log.Warn("account unreachable, its folders are left out", "account", a.Name, "err", err)
			continue
		}
		learned = append(learned, router.TreeAccount{Name: a.Name, Prefix: a.Prefix, Delimiter: c.Delimiter(), Personal: c.PersonalPrefix()})
		pool.Put(c)
	}
	if len(learned) > 0 {
		ts, err = call(ctx, h, learnEvent{accounts: learned, reply: reply}, reply)
		if err != nil {
			return nil, nil, err
		}
	}
	if ts.err != nil {
		return nil, nil, ts.err
	}
	return ts.tree, ts.accounts, nil
}

// accountList is one account's LIST answer.
type accountList struct {
	account string
	list    []*imap.ListData
	// down: the account could not be reached; list is its last answer
	// (as an earlier hub saved it if it has not answered this one).
	down bool
	// subs: list marks the subscribed folders \Subscribed.
	subs bool
}

// listAccounts LISTs every account of the tree, in order. An account
// that fails is logged and given with its last answer, marked down, so
// that its folders stay listed while it is unreachable (selecting one
// then answers NO [UNAVAILABLE]). The last answer survives the hub in the
// store (hub_saved.go), written when it changes.
func (h *Hub) listAccounts(ctx context.Context, accounts []string) []accountList {
	var out []accountList
	for _, name := range accounts {
		pool := h.pools[name]
		c, err := pool.Get(ctx)
		var l []*imap.ListData
		var delim, personal string
		subs := false
		if err == nil {
			l, err = c.List(ctx)
			subs, delim, personal = c.ListsSubscriptions(), c.Delimiter(), c.PersonalPrefix()
			pool.Put(c)
		}
		h.listMu.Lock()
		last, had := h.lastList[name]
		if err == nil {
			h.lastList[name] = accountList{list: l, subs: subs}
		} else {
			l, subs = last.list, last.subs
		}
		h.listMu.Unlock()
		switch {
		case err == nil && (!had || subs != last.subs || !sameList(l, last.list)):
			h.saveFolders(ctx, name, delim, personal, l, subs)
		case err != nil && !had:
			// Not listed since the hub started: as saved, if ever.
			if sf, ok := h.loadFolders(ctx, name); ok {
				l, subs = sf.list(), sf.Subs
			}
		}
		if err != nil {
			h.log.Warn("list: account unreachable, its last known folders are shown", "account", name, "folders", len(l), "err", err)
		}
		out = append(out, accountList{account: name, list: l, down: err != nil, subs: subs})
	}
	return out
}

// List returns every virtual folder, sorted by name, and the accounts
// that could not be reached: each account's folders (an unreachable
// one's as last listed) mapped through the tree (attributes kept, except the
// special use of a unified use, whose folder is reached through the
// unified one: the primary account's is hidden, another account's loses
// the attribute), the account prefixes as \NoSelect \HasChildren
// containers, the INBOX, and the unified special-use folders with their
// attribute.
func (h *Hub) List(ctx context.Context) ([]Folder, []string, error) {
	tree, accounts, err := h.tree(ctx)
	if err != nil {
		return nil, nil, err
	}
	byName := make(map[string]Folder)
	primary := tree.Primary()
	var down []string
	for _, a := range h.spec.Accounts {
		if !slices.Contains(accounts, a.Name) {
			down = append(down, a.Name) // never reached: no namespace
		}
	}
	for _, al := range h.listAccounts(ctx, accounts) {
		if al.down {
			down = append(down, al.account)
		}
		for _, ld := range al.list {
			name, ok := tree.VirtualName(al.account, ld.Mailbox)
			if !ok {
				continue
			}
			f := Folder{Name: name, Account: al.account, Subscribed: !al.subs}
			hidden := false
			for _, a := range ld.Attrs {
				if strings.EqualFold(string(a), string(imap.MailboxAttrSubscribed)) {
					f.Subscribed = true
					continue
				}
				if use, ok := specialUse(a); ok && tree.IsUnified(use) {
					hidden = al.account == primary && !isInboxName(ld.Mailbox)
					continue
				}
				if strings.EqualFold(string(a), string(imap.MailboxAttrNoSelect)) ||
					strings.EqualFold(string(a), string(imap.MailboxAttrNonExistent)) {
					f.NoSelect = true
				}
				f.Attrs = append(f.Attrs, a)
			}
			if !hidden {
				byName[name] = f
			}
		}
	}
	for _, p := range tree.Prefixes() {
		t, err := tree.Resolve(p)
		if err != nil {
			continue
		}
		byName[p] = Folder{Name: p, Account: t.Account, NoSelect: true, Subscribed: true,
			Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect, imap.MailboxAttrHasChildren}}
	}
	if _, ok := byName["INBOX"]; !ok || tree.UnifiedInbox() {
		t, err := tree.Resolve("INBOX")
		if err == nil {
			byName["INBOX"] = Folder{Name: "INBOX", Unified: t.Unified, Account: t.Account, Subscribed: true}
		}
	}
	for _, use := range tree.UnifiedUses() {
		n := unifiedName(use)
		byName[n] = Folder{Name: n, Unified: true, Use: use, Subscribed: true, Attrs: []imap.MailboxAttr{imap.MailboxAttr(use)}}
	}
	out := make([]Folder, 0, len(byName))
	for _, f := range byName {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b Folder) int { return strings.Compare(a.Name, b.Name) })
	return out, down, nil
}

// specialUse returns the normalized special use of a LIST attribute.
func specialUse(a imap.MailboxAttr) (string, bool) {
	s := string(a)
	if !strings.HasPrefix(s, `\`) {
		return "", false
	}
	return config.NormalizeSpecialUse(s)
}

// unifiedName is the virtual name of a unified special use's folder.
func unifiedName(use string) string {
	n, _ := config.NormalizeSpecialUse(use)
	return config.UnifiedFolderName(n)
}

// isInboxName reports whether name is the INBOX (in any case).
func isInboxName(name string) bool { return strings.EqualFold(name, "INBOX") }
