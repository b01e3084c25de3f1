package router

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"imapproxy/config"
)

// Delimiter is the hierarchy delimiter of a merge user's folder tree,
// whatever the upstreams use.
const Delimiter = "/"

// inbox is the name of every account's inbox (RFC 9051: case-insensitive).
const inbox = "INBOX"

// Errors of the folder tree. Every error the tree returns is a *TreeError
// wrapping one of them, with a text fit to send to the client.
var (
	// ErrNoSuchMailbox: the name is in no account (answer NO [NONEXISTENT]).
	ErrNoSuchMailbox = errors.New("router: no such mailbox")
	// ErrCannot: the operation can never succeed on this name, such as a
	// CREATE at the top level without a primary account or a RENAME across
	// accounts (answer NO [CANNOT]).
	ErrCannot = errors.New("router: cannot")
	// ErrAlreadyExists: CREATE of a name that always exists, an INBOX
	// (answer NO [ALREADYEXISTS]).
	ErrAlreadyExists = errors.New("router: already exists")
)

// TreeError is an error of the folder tree: Kind is ErrNoSuchMailbox,
// ErrCannot or ErrAlreadyExists (errors.Is works), Text the client-ready
// text of the NO response.
type TreeError struct {
	Kind error
	Text string
}

func (e *TreeError) Error() string { return e.Text }

// Unwrap returns Kind.
func (e *TreeError) Unwrap() error { return e.Kind }

func treeErr(kind error, format string, args ...any) error {
	return &TreeError{Kind: kind, Text: fmt.Sprintf(format, args...)}
}

// TreeAccount describes one upstream account of a merge user's tree.
type TreeAccount struct {
	Name      string // account name
	Prefix    string // mount point, "" for the primary account
	Delimiter string // the upstream's hierarchy delimiter ("." or "/"; "" = flat, no hierarchy)
	Personal  string // the upstream's personal namespace prefix, e.g. "INBOX." or ""
}

// Source is one upstream mailbox: an account and the mailbox's name there
// (UTF-8, as the upstream lists it).
type Source struct{ Account, Mailbox string }

// Target is where a virtual mailbox lives.
type Target struct {
	// Unified is set for the unified INBOX and the unified special-use
	// folders.
	Unified bool
	// Use is the special use ("\Sent") of a unified special-use folder, ""
	// otherwise (the unified INBOX included).
	Use string
	// Sources are the upstream mailboxes behind the virtual one: one for an
	// account folder; every account's INBOX for the unified INBOX; none for
	// a unified special-use folder, whose sources the caller gets from
	// UnifiedSources with what the accounts list; none for a container.
	Sources []Source
	// Account is the account of an account folder or of a prefix container.
	Account string
	// NoSelect marks a prefix ("Work"): a container for the account's
	// folders, listed \NoSelect \HasChildren.
	NoSelect bool
}

// Tree maps a merge user's virtual folder tree to upstream mailboxes and
// back. It is pure and immutable, safe for concurrent use.
//
// Layout. Each account is mounted under its prefix: the upstream's
// "Lists.golang" of account "Home" is "Home/Lists/golang". The primary
// account (empty prefix) has its folders at the top level, next to the
// prefixes. The top-level INBOX is the union of all accounts' INBOXes when
// the inbox is unified, else the primary account's INBOX, else the first
// account's. Each non-primary account's own INBOX is also "<prefix>/INBOX".
// A unified special use has a top-level folder named after it ("Sent" for
// \Sent).
//
// Names. Upstream delimiters become "/" and back. A name in the upstream's
// personal namespace loses its prefix ("INBOX.Sent" on Courier is
// "Home/Sent"), and names the tree creates there get it. INBOX is matched
// without regard to case, and so are the names the proxy itself puts at the
// top level (INBOX, prefixes, unified folders): "WORK/x" is "Work/x".
//
// What is hidden (VirtualName answers false):
//   - upstream names outside the personal namespace (other users' and
//     shared namespaces are not shown);
//   - names with an empty component, or with a "/" inside a component on
//     an upstream whose delimiter is not "/" (such a name cannot be written
//     in the tree; mapping it to an escape would make names that are not
//     the upstream's, so it is left out);
//   - a mailbox that is not the INBOX but is named INBOX in any case
//     relative to the personal namespace (Courier's "INBOX.INBOX"): it
//     would stand where the INBOX does;
//   - the primary account's INBOX when the inbox is unified (it is in the
//     union);
//   - the primary account's folders whose first component is another
//     account's prefix, with their subfolders: the mount shadows them;
//   - the primary account's folders named like a unified special-use
//     folder ("Sent"). Their subfolders ("Sent/2023") stay shown and
//     belong to the primary account, but CREATE under a unified folder is
//     refused. The primary account's folder of a unified use is meant to
//     be reached through the union; when it has another name ("Sent
//     Items") the caller hides it too (see Primary and IsUnified).
type Tree struct {
	accounts     []TreeAccount // Personal normalized to end with Delimiter
	primary      int           // index of the primary account, -1 if none
	inboxAccount int           // account whose INBOX is the top-level INBOX when not unified
	unifiedInbox bool
	uses         []string // unified special uses, normalized, in config.SpecialUses order
}

// NewTree builds the tree of a merge user. Accounts need distinct
// non-empty names and valid, distinct prefixes (config.CheckPrefix;
// compared without case), at most one of them empty, none named like a
// unified folder; delimiters are "" or one character. A personal namespace
// prefix that does not end with its delimiter gets it. unifiedSpecialUse
// takes the forms config.NormalizeSpecialUse accepts.
func NewTree(accounts []TreeAccount, unifiedInbox bool, unifiedSpecialUse []string) (*Tree, error) {
	if len(accounts) == 0 {
		return nil, errors.New("router: tree: no accounts")
	}
	t := &Tree{primary: -1, unifiedInbox: unifiedInbox}
	want := make(map[string]bool)
	for _, s := range unifiedSpecialUse {
		use, ok := config.NormalizeSpecialUse(s)
		if !ok {
			return nil, fmt.Errorf("router: tree: %q is not a special use that can be unified", s)
		}
		want[use] = true
	}
	for _, use := range config.SpecialUses {
		if want[use] {
			t.uses = append(t.uses, use)
		}
	}
	for i, a := range accounts {
		if a.Name == "" {
			return nil, fmt.Errorf("router: tree: account %d has no name", i)
		}
		if err := config.CheckPrefix(a.Prefix); err != nil {
			return nil, fmt.Errorf("router: tree: account %q: prefix %w", a.Name, err)
		}
		if utf8.RuneCountInString(a.Delimiter) > 1 {
			return nil, fmt.Errorf("router: tree: account %q: delimiter %q is not one character", a.Name, a.Delimiter)
		}
		if a.Prefix != "" && t.unifiedUse(a.Prefix) != "" {
			return nil, fmt.Errorf("router: tree: account %q: prefix %q is a unified folder", a.Name, a.Prefix)
		}
		for _, b := range t.accounts {
			switch {
			case b.Name == a.Name:
				return nil, fmt.Errorf("router: tree: two accounts named %q", a.Name)
			case strings.EqualFold(b.Prefix, a.Prefix):
				return nil, fmt.Errorf("router: tree: accounts %q and %q have the same prefix %q", b.Name, a.Name, a.Prefix)
			}
		}
		if a.Prefix == "" {
			t.primary = i
		}
		if a.Personal != "" && a.Delimiter != "" && !strings.HasSuffix(a.Personal, a.Delimiter) {
			a.Personal += a.Delimiter
		}
		t.accounts = append(t.accounts, a)
	}
	t.inboxAccount = max(t.primary, 0)
	return t, nil
}

// Prefixes lists the mount points of the non-primary accounts, in account
// order: the \NoSelect \HasChildren containers at the top level.
func (t *Tree) Prefixes() []string {
	var ps []string
	for _, a := range t.accounts {
		if a.Prefix != "" {
			ps = append(ps, a.Prefix)
		}
	}
	return ps
}

// Primary returns the name of the primary account (empty prefix), or "".
func (t *Tree) Primary() string {
	if t.primary < 0 {
		return ""
	}
	return t.accounts[t.primary].Name
}

// UnifiedInbox reports whether the top-level INBOX is the union of all
// accounts' INBOXes.
func (t *Tree) UnifiedInbox() bool { return t.unifiedInbox }

// UnifiedUses lists the unified special uses ("\Sent", ...); each has a
// top-level folder named UnifiedFolderName(use).
func (t *Tree) UnifiedUses() []string { return append([]string(nil), t.uses...) }

// IsUnified reports whether special use use (any form NormalizeSpecialUse
// accepts) is unified. The caller lists the primary account's mailbox of
// a unified use only through the unified folder.
func (t *Tree) IsUnified(use string) bool {
	n, ok := config.NormalizeSpecialUse(use)
	if !ok {
		return false
	}
	for _, u := range t.uses {
		if u == n {
			return true
		}
	}
	return false
}

// unifiedUse returns the special use whose unified folder is named name
// (without regard to case), or "".
func (t *Tree) unifiedUse(name string) string {
	for _, u := range t.uses {
		if strings.EqualFold(name, config.UnifiedFolderName(u)) {
			return u
		}
	}
	return ""
}

// account returns the index of the account named name, or -1.
func (t *Tree) account(name string) int {
	for i := range t.accounts {
		if t.accounts[i].Name == name {
			return i
		}
	}
	return -1
}

// mount returns the index of the non-primary account whose prefix is name
// (without regard to case), or -1.
func (t *Tree) mount(name string) int {
	for i := range t.accounts {
		if p := t.accounts[i].Prefix; p != "" && strings.EqualFold(p, name) {
			return i
		}
	}
	return -1
}

// createHint says where folders can be created, for error texts.
func (t *Tree) createHint() string {
	switch {
	case t.primary < 0:
		return "create folders under " + t.prefixList()
	case len(t.accounts) == 1:
		return "create folders at the top level"
	}
	return "create folders at the top level or under " + t.prefixList()
}

// prefixList names the prefixes for error texts: "Work/ or Home/".
func (t *Tree) prefixList() string {
	ps := t.Prefixes()
	for i := range ps {
		ps[i] += Delimiter
	}
	switch len(ps) {
	case 0:
		return "no account prefix"
	case 1:
		return ps[0]
	}
	return strings.Join(ps[:len(ps)-1], ", ") + " or " + ps[len(ps)-1]
}

func isInbox(name string) bool { return strings.EqualFold(name, inbox) }
