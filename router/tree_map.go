package router

import (
	"strings"

	"imapproxy/config"
)

// VirtualName maps a mailbox of account, named as its upstream lists it
// (UTF-8), to its name in the tree. ok is false when the mailbox is not
// shown (see Tree for what is hidden) or account is unknown. An account's
// INBOX (any case) is "<prefix>/INBOX", and the primary account's is
// "INBOX" unless the inbox is unified (it is then only in the union).
func (t *Tree) VirtualName(account, upstreamName string) (string, bool) {
	i := t.account(account)
	if i < 0 {
		return "", false
	}
	a := &t.accounts[i]
	if isInbox(upstreamName) {
		switch {
		case i != t.primary:
			return a.Prefix + Delimiter + inbox, true
		case t.unifiedInbox:
			return "", false
		}
		return inbox, true
	}
	rel, ok := strings.CutPrefix(upstreamName, a.Personal)
	if !ok || rel == "" {
		return "", false
	}
	comps := []string{rel}
	if a.Delimiter != "" {
		comps = strings.Split(rel, a.Delimiter)
	}
	for _, c := range comps {
		if c == "" || strings.Contains(c, Delimiter) {
			return "", false
		}
	}
	if len(comps) == 1 && isInbox(comps[0]) {
		return "", false // not the INBOX, but it would stand where it does
	}
	if i != t.primary {
		return a.Prefix + Delimiter + strings.Join(comps, Delimiter), true
	}
	if t.mount(comps[0]) >= 0 || len(comps) == 1 && t.unifiedUse(comps[0]) != "" {
		return "", false // shadowed by a prefix or a unified folder
	}
	return strings.Join(comps, Delimiter), true
}

// Resolve maps a virtual name to where it lives. The INBOX (any case) is
// the unified INBOX, with every account's INBOX as Sources, or one
// account's INBOX. A unified folder's name gives a Unified Target without
// Sources (see UnifiedSources), a prefix a NoSelect container, and any
// other name the one upstream mailbox it stands for, whether or not that
// exists. Names outside every account (no such prefix and no primary
// account), with an empty component, or with a component that contains
// the upstream's delimiter, are ErrNoSuchMailbox.
func (t *Tree) Resolve(virtual string) (Target, error) {
	if isInbox(virtual) {
		if t.unifiedInbox {
			return Target{Unified: true, Sources: t.UnifiedSources("", nil)}, nil
		}
		a := t.accounts[t.inboxAccount].Name
		return Target{Account: a, Sources: []Source{{a, inbox}}}, nil
	}
	comps := strings.Split(virtual, Delimiter)
	for _, c := range comps {
		if c == "" {
			return Target{}, treeErr(ErrNoSuchMailbox, "%q is not a valid folder name", virtual)
		}
	}
	if len(comps) == 1 {
		if use := t.unifiedUse(comps[0]); use != "" {
			return Target{Unified: true, Use: use}, nil
		}
	}
	i, rel := t.locate(comps)
	if i < 0 {
		return Target{}, treeErr(ErrNoSuchMailbox, "%q does not exist: folders are under %s", virtual, t.prefixList())
	}
	a := &t.accounts[i]
	if len(rel) == 0 {
		return Target{Account: a.Name, NoSelect: true}, nil
	}
	name, err := t.upstreamName(a, rel)
	if err != nil {
		return Target{}, treeErr(ErrNoSuchMailbox, "%q does not exist: %s", virtual, err.Error())
	}
	return Target{Account: a.Name, Sources: []Source{{a.Name, name}}}, nil
}

// locate returns the account a virtual name's components belong to and the
// components relative to its mount, or -1: the account mounted at the first
// component, else the primary account.
func (t *Tree) locate(comps []string) (int, []string) {
	if i := t.mount(comps[0]); i >= 0 {
		return i, comps[1:]
	}
	return t.primary, comps
}

// upstreamName builds the upstream name of components rel (relative to the
// account's mount, at least one): its INBOX, or a name in the personal
// namespace. It fails when a component holds the upstream's delimiter or
// the upstream is flat and rel has several components.
func (t *Tree) upstreamName(a *TreeAccount, rel []string) (string, error) {
	if len(rel) == 1 && isInbox(rel[0]) {
		return inbox, nil
	}
	if a.Delimiter == "" {
		if len(rel) > 1 {
			return "", treeErr(ErrCannot, "the server of %s has no subfolders", a.Name)
		}
	} else {
		for _, c := range rel {
			if strings.Contains(c, a.Delimiter) {
				return "", treeErr(ErrCannot, "the server of %s uses %q to separate folder names: %q cannot be part of one", a.Name, a.Delimiter, a.Delimiter)
			}
		}
	}
	name := a.Personal + strings.Join(rel, a.Delimiter)
	if isInbox(name) { // only with an odd delimiter: never let a name stand for the INBOX
		return "", treeErr(ErrCannot, "%q would be the INBOX of %s", strings.Join(rel, Delimiter), a.Name)
	}
	return name, nil
}

// UnifiedSources returns the sources of a unified folder in account order.
// For the unified INBOX (use "" or "INBOX") they are every account's INBOX
// and byAccount is not needed. For a special use (any form
// config.NormalizeSpecialUse accepts) they are, for each account that has
// one, its mailbox of that use as byAccount says: account name → special
// use → upstream mailbox name, from the accounts' LIST answers (uses in
// any accepted form).
func (t *Tree) UnifiedSources(use string, byAccount map[string]map[string]string) []Source {
	var out []Source
	if use == "" || isInbox(use) {
		for _, a := range t.accounts {
			out = append(out, Source{a.Name, inbox})
		}
		return out
	}
	use, ok := config.NormalizeSpecialUse(use)
	if !ok {
		return nil
	}
	for _, a := range t.accounts {
		if name, ok := lookupUse(byAccount[a.Name], use); ok {
			out = append(out, Source{a.Name, name})
		}
	}
	return out
}

// lookupUse finds the mailbox of a normalized special use in m.
func lookupUse(m map[string]string, use string) (string, bool) {
	if name, ok := m[use]; ok {
		return name, true
	}
	for k, name := range m {
		if n, ok := config.NormalizeSpecialUse(k); ok && n == use {
			return name, true
		}
	}
	return "", false
}

// Create maps a CREATE of a virtual name to the account and upstream name
// to create. It fails with ErrAlreadyExists for an INBOX (top-level or
// "<prefix>/INBOX"), and with ErrCannot, in a text that names the
// prefixes, for a prefix itself, a unified folder or a name under one, a
// top-level name when there is no primary account, a name with an empty
// component, and a name the upstream cannot hold (its delimiter inside a
// component, or subfolders on a flat server).
func (t *Tree) Create(virtual string) (Source, error) {
	if isInbox(virtual) {
		return Source{}, treeErr(ErrAlreadyExists, "INBOX always exists")
	}
	comps := strings.Split(virtual, Delimiter)
	for _, c := range comps {
		if c == "" {
			return Source{}, treeErr(ErrCannot, "%q is not a valid folder name (an empty part between %q)", virtual, Delimiter)
		}
	}
	if use := t.unifiedUse(comps[0]); use != "" {
		return Source{}, treeErr(ErrCannot, "%s is the unified folder of all accounts' %s folders: %s",
			config.UnifiedFolderName(use), use, t.createHint())
	}
	if t.unifiedInbox && isInbox(comps[0]) {
		return Source{}, treeErr(ErrCannot, "INBOX is the unified inbox of all accounts: %s", t.createHint())
	}
	i, rel := t.locate(comps)
	switch {
	case i < 0:
		return Source{}, treeErr(ErrCannot, "%s cannot be at the top level: %s", virtual, t.createHint())
	case len(rel) == 0:
		return Source{}, treeErr(ErrCannot, "%s is where account %s is mounted: create folders under %s",
			t.accounts[i].Prefix, t.accounts[i].Name, t.accounts[i].Prefix+Delimiter)
	case len(rel) == 1 && isInbox(rel[0]):
		return Source{}, treeErr(ErrAlreadyExists, "%s is the INBOX of account %s", virtual, t.accounts[i].Name)
	}
	a := &t.accounts[i]
	name, err := t.upstreamName(a, rel)
	if err != nil {
		return Source{}, err
	}
	return Source{a.Name, name}, nil
}

// Rename maps a RENAME. from must be an account's folder (an INBOX
// included: RFC 9051 moves its messages), to must be a name Create
// accepts, and both must be in the same account; ErrCannot otherwise
// (unified folders and prefixes cannot be renamed), ErrNoSuchMailbox when
// from is in no account.
func (t *Tree) Rename(from, to string) (Source, Source, error) {
	src, err := t.Resolve(from)
	switch {
	case err != nil:
		return Source{}, Source{}, err
	case src.Unified:
		return Source{}, Source{}, treeErr(ErrCannot, "%s is a unified folder and cannot be renamed", from)
	case src.NoSelect:
		return Source{}, Source{}, treeErr(ErrCannot, "%s is where account %s is mounted and cannot be renamed", from, src.Account)
	}
	dst, err := t.Create(to)
	if err != nil {
		return Source{}, Source{}, err
	}
	if dst.Account != src.Account {
		return Source{}, Source{}, treeErr(ErrCannot, "cannot rename across accounts (%s is in %s, %s would be in %s): copy the messages instead",
			from, src.Account, to, dst.Account)
	}
	return src.Sources[0], dst, nil
}
