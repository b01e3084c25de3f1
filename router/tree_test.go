package router

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Accounts like the upstreams the proxy meets.
var (
	// Dovecot: "/" delimiter, no personal namespace prefix.
	dovecotWork = TreeAccount{Name: "work", Prefix: "Work", Delimiter: "/"}
	// Courier and Cyrus: "." delimiter, personal folders under "INBOX.".
	courierHome = TreeAccount{Name: "home", Prefix: "Home", Delimiter: ".", Personal: "INBOX."}
	// A Dovecot account at the top level.
	dovecotMain = TreeAccount{Name: "main", Delimiter: "/"}
	// A Cyrus account at the top level, its namespace written without the
	// delimiter (NewTree adds it).
	cyrusMain = TreeAccount{Name: "cyrus", Delimiter: ".", Personal: "INBOX"}
	// A server without hierarchy.
	flatOld = TreeAccount{Name: "old", Prefix: "Old ISP", Delimiter: ""}
)

func mustTree(t testing.TB, accounts []TreeAccount, unifiedInbox bool, uses ...string) *Tree {
	t.Helper()
	tr, err := NewTree(accounts, unifiedInbox, uses)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// The trees the tests use.
type trees struct {
	plain   *Tree // work + home, nothing unified, no primary account
	merged  *Tree // main (primary) + work + home, unified INBOX, \Sent and \Trash
	cyrus   *Tree // cyrus (primary) + work + old, nothing unified
	unified *Tree // work + home + old, unified INBOX and \Junk, no primary account
}

func testTrees(t testing.TB) trees {
	return trees{
		plain:   mustTree(t, []TreeAccount{dovecotWork, courierHome}, false),
		merged:  mustTree(t, []TreeAccount{dovecotMain, dovecotWork, courierHome}, true, "sent", `\TRASH`),
		cyrus:   mustTree(t, []TreeAccount{cyrusMain, dovecotWork, flatOld}, false),
		unified: mustTree(t, []TreeAccount{dovecotWork, courierHome, flatOld}, true, `\Junk`),
	}
}

func TestVirtualName(t *testing.T) {
	tr := testTrees(t)
	tests := []struct {
		name     string
		tree     *Tree
		account  string
		upstream string
		want     string // "" = hidden
	}{
		{"dovecot folder", tr.plain, "work", "Sent", "Work/Sent"},
		{"dovecot subfolder", tr.plain, "work", "Lists/golang", "Work/Lists/golang"},
		{"dovecot INBOX", tr.plain, "work", "INBOX", "Work/INBOX"},
		{"INBOX any case", tr.plain, "work", "inbox", "Work/INBOX"},
		{"dovecot INBOX child", tr.plain, "work", "INBOX/Receipts", "Work/INBOX/Receipts"},
		{"dovecot name with a dot", tr.plain, "work", "v1.2 notes", "Work/v1.2 notes"},
		{"courier personal folder", tr.plain, "home", "INBOX.Sent", "Home/Sent"},
		{"courier subfolder", tr.plain, "home", "INBOX.Lists.golang", "Home/Lists/golang"},
		{"courier INBOX", tr.plain, "home", "INBOX", "Home/INBOX"},
		{"courier folder named INBOX is hidden", tr.plain, "home", "INBOX.INBOX", ""},
		{"courier folder named inbox is hidden", tr.plain, "home", "INBOX.inbox", ""},
		{"courier folder under one named INBOX", tr.plain, "home", "INBOX.INBOX.x", "Home/INBOX/x"},
		{"courier outside the personal namespace", tr.plain, "home", "shared.team", ""},
		{"courier namespace root", tr.plain, "home", "INBOX.", ""},
		{"slash inside a courier name is hidden", tr.plain, "home", "INBOX.a/b", ""},
		{"empty component", tr.plain, "home", "INBOX.a..b", ""},
		{"trailing delimiter", tr.plain, "work", "a/", ""},
		{"spaces and UTF-8", tr.plain, "home", "INBOX.Reisen 2024.Ägypten ☀", "Home/Reisen 2024/Ägypten ☀"},
		{"unknown account", tr.plain, "nope", "Sent", ""},
		{"primary folder at the top level", tr.merged, "main", "Lists/golang", "Lists/golang"},
		{"primary INBOX in the unified INBOX", tr.merged, "main", "INBOX", ""},
		{"primary INBOX child", tr.merged, "main", "INBOX/Receipts", "INBOX/Receipts"},
		{"primary folder named like a prefix is shadowed", tr.merged, "main", "Work", ""},
		{"shadowed without regard to case", tr.merged, "main", "home/x", ""},
		{"primary folder named like a unified folder", tr.merged, "main", "Sent", ""},
		{"unified folder without regard to case", tr.merged, "main", "TRASH", ""},
		{"primary folder under a unified name stays", tr.merged, "main", "Sent/2023", "Sent/2023"},
		{"primary folder of a use not unified", tr.merged, "main", "Drafts", "Drafts"},
		{"other account's special use stays under its prefix", tr.merged, "work", "Sent", "Work/Sent"},
		{"other account's INBOX with unified inbox", tr.merged, "home", "INBOX", "Home/INBOX"},
		{"cyrus primary: namespace stripped", tr.cyrus, "cyrus", "INBOX.Sent", "Sent"},
		{"cyrus primary INBOX", tr.cyrus, "cyrus", "INBOX", "INBOX"},
		{"cyrus primary: subfolder", tr.cyrus, "cyrus", "INBOX.a.b", "a/b"},
		{"cyrus primary: shadowed by a prefix", tr.cyrus, "cyrus", "INBOX.WORK.x", ""},
		{"flat server", tr.cyrus, "old", "Sent.2023", "Old ISP/Sent.2023"},
		{"flat server, slash in the name", tr.cyrus, "old", "a/b", ""},
		{"flat server INBOX", tr.cyrus, "old", "INBOX", "Old ISP/INBOX"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.tree.VirtualName(tt.account, tt.upstream)
			if ok != (tt.want != "") || got != tt.want {
				t.Fatalf("VirtualName(%q, %q) = %q, %v; want %q", tt.account, tt.upstream, got, ok, tt.want)
			}
			if !ok {
				return
			}
			// Round trip: the name resolves back to the mailbox.
			tgt, err := tt.tree.Resolve(got)
			want := Source{tt.account, tt.upstream}
			if isInbox(tt.upstream) {
				want.Mailbox = "INBOX"
			}
			if err != nil || tgt.Unified || tgt.Account != tt.account || !reflect.DeepEqual(tgt.Sources, []Source{want}) {
				t.Fatalf("Resolve(%q) = %+v, %v; want %v", got, tgt, err, want)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	tr := testTrees(t)
	allInboxes := []Source{{"main", "INBOX"}, {"work", "INBOX"}, {"home", "INBOX"}}
	tests := []struct {
		name    string
		tree    *Tree
		virtual string
		want    Target
		err     error
	}{
		{"INBOX is the first account's without primary or union", tr.plain, "INBOX",
			Target{Account: "work", Sources: []Source{{"work", "INBOX"}}}, nil},
		{"INBOX any case", tr.plain, "Inbox", Target{Account: "work", Sources: []Source{{"work", "INBOX"}}}, nil},
		{"INBOX is the primary's", tr.cyrus, "INBOX", Target{Account: "cyrus", Sources: []Source{{"cyrus", "INBOX"}}}, nil},
		{"unified INBOX", tr.merged, "inbox", Target{Unified: true, Sources: allInboxes}, nil},
		{"unified special use", tr.merged, "Sent", Target{Unified: true, Use: `\Sent`}, nil},
		{"unified special use, other case", tr.merged, "trash", Target{Unified: true, Use: `\Trash`}, nil},
		{"prefix is a container", tr.plain, "Work", Target{Account: "work", NoSelect: true}, nil},
		{"prefix without regard to case", tr.plain, "HOME/Sent", Target{Account: "home", Sources: []Source{{"home", "INBOX.Sent"}}}, nil},
		{"account INBOX", tr.plain, "Home/inbox", Target{Account: "home", Sources: []Source{{"home", "INBOX"}}}, nil},
		{"courier subfolder", tr.plain, "Home/Lists/golang", Target{Account: "home", Sources: []Source{{"home", "INBOX.Lists.golang"}}}, nil},
		{"dovecot subfolder", tr.plain, "Work/Lists/golang", Target{Account: "work", Sources: []Source{{"work", "Lists/golang"}}}, nil},
		{"primary folder", tr.merged, "Projects/2024", Target{Account: "main", Sources: []Source{{"main", "Projects/2024"}}}, nil},
		{"primary folder under a unified name", tr.merged, "Sent/2023", Target{Account: "main", Sources: []Source{{"main", "Sent/2023"}}}, nil},
		{"primary folder of a use not unified", tr.merged, "Drafts", Target{Account: "main", Sources: []Source{{"main", "Drafts"}}}, nil},
		{"cyrus primary in its namespace", tr.cyrus, "Sent", Target{Account: "cyrus", Sources: []Source{{"cyrus", "INBOX.Sent"}}}, nil},
		{"flat server", tr.cyrus, "Old ISP/Sent.2023", Target{Account: "old", Sources: []Source{{"old", "Sent.2023"}}}, nil},
		{"no such prefix, no primary", tr.plain, "Nope/x", Target{}, ErrNoSuchMailbox},
		{"top level, no primary", tr.plain, "Sent", Target{}, ErrNoSuchMailbox},
		{"empty name", tr.plain, "", Target{}, ErrNoSuchMailbox},
		{"empty component", tr.plain, "Work//x", Target{}, ErrNoSuchMailbox},
		{"trailing delimiter", tr.merged, "Work/", Target{}, ErrNoSuchMailbox},
		{"leading delimiter", tr.merged, "/Work", Target{}, ErrNoSuchMailbox},
		{"upstream delimiter in a component", tr.plain, "Home/a.b", Target{}, ErrNoSuchMailbox},
		{"subfolder on a flat server", tr.cyrus, "Old ISP/a/b", Target{}, ErrNoSuchMailbox},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.tree.Resolve(tt.virtual)
			if tt.err != nil {
				var te *TreeError
				if !errors.Is(err, tt.err) || !errors.As(err, &te) || te.Text == "" {
					t.Fatalf("Resolve(%q) = %+v, %v; want %v", tt.virtual, got, err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Resolve(%q) = %+v, %v; want %+v", tt.virtual, got, err, tt.want)
			}
		})
	}
}

func TestCreateRename(t *testing.T) {
	tr := testTrees(t)
	tests := []struct {
		name string
		tree *Tree
		from string // "" for a CREATE of to
		to   string
		want Source // of to
		err  error
		text string // in the error's text
	}{
		{"under a dovecot prefix", tr.plain, "", "Work/Projects/2024", Source{"work", "Projects/2024"}, nil, ""},
		{"under a courier prefix: personal namespace", tr.plain, "", "Home/Reisen", Source{"home", "INBOX.Reisen"}, nil, ""},
		{"courier subfolder", tr.plain, "", "Home/a/b c", Source{"home", "INBOX.a.b c"}, nil, ""},
		{"UTF-8", tr.plain, "", "Work/Événements", Source{"work", "Événements"}, nil, ""},
		{"top level goes to the primary", tr.merged, "", "Projects", Source{"main", "Projects"}, nil, ""},
		{"top level into the cyrus namespace", tr.cyrus, "", "Projects", Source{"cyrus", "INBOX.Projects"}, nil, ""},
		{"INBOX child on the primary", tr.cyrus, "", "INBOX/x", Source{"cyrus", "INBOX.INBOX.x"}, nil, ""},
		{"top level without primary", tr.plain, "", "Projects", Source{}, ErrCannot, "create folders under Work/ or Home/"},
		{"INBOX child without primary", tr.plain, "", "INBOX/x", Source{}, ErrCannot, "create folders under Work/ or Home/"},
		{"INBOX", tr.plain, "", "inbox", Source{}, ErrAlreadyExists, "INBOX always exists"},
		{"account INBOX", tr.plain, "", "Home/INBOX", Source{}, ErrAlreadyExists, "INBOX of account home"},
		{"the prefix itself", tr.plain, "", "work", Source{}, ErrCannot, "create folders under Work/"},
		{"a unified folder", tr.merged, "", "Sent", Source{}, ErrCannot, "create folders at the top level or under Work/ or Home/"},
		{"inside a unified folder", tr.merged, "", "trash/old", Source{}, ErrCannot, `all accounts' \Trash folders`},
		{"inside the unified INBOX", tr.merged, "", "INBOX/x", Source{}, ErrCannot, "unified inbox"},
		{"unified folder without primary", tr.unified, "", "Junk", Source{}, ErrCannot, "create folders under Work/, Home/ or Old ISP/"},
		{"upstream delimiter in a name", tr.plain, "", "Home/v1.2", Source{}, ErrCannot, `uses "."`},
		{"subfolder on a flat server", tr.cyrus, "", "Old ISP/a/b", Source{}, ErrCannot, "no subfolders"},
		{"empty component", tr.plain, "", "Work//x", Source{}, ErrCannot, "not a valid folder name"},
		{"empty name", tr.plain, "", "", Source{}, ErrCannot, "not a valid folder name"},

		{"rename in an account", tr.plain, "Home/Reisen", "Home/Trips", Source{"home", "INBOX.Trips"}, nil, ""},
		{"rename an account INBOX", tr.plain, "Work/INBOX", "Work/Old mail", Source{"work", "Old mail"}, nil, ""},
		{"rename the INBOX alias", tr.plain, "INBOX", "Work/Old mail", Source{"work", "Old mail"}, nil, ""},
		{"rename into a unified folder", tr.merged, "Projects", "Sent/2023/Projects", Source{}, ErrCannot, "unified folder"},
		{"rename primary to top level", tr.cyrus, "a", "b", Source{"cyrus", "INBOX.b"}, nil, ""},
		{"rename across accounts", tr.plain, "Work/Projects", "Home/Projects", Source{}, ErrCannot, "across accounts"},
		{"rename primary into an account", tr.merged, "Projects", "Work/Projects", Source{}, ErrCannot, "across accounts"},
		{"rename a unified folder", tr.merged, "Sent", "Work/Sent2", Source{}, ErrCannot, "Sent is a unified folder"},
		{"rename the unified INBOX", tr.merged, "INBOX", "Work/x", Source{}, ErrCannot, "unified folder"},
		{"rename a prefix", tr.plain, "Work", "Work2", Source{}, ErrCannot, "mounted"},
		{"rename from nowhere", tr.plain, "Nope/x", "Work/x", Source{}, ErrNoSuchMailbox, "Work/ or Home/"},
		{"rename onto an INBOX", tr.plain, "Work/x", "Work/INBOX", Source{}, ErrAlreadyExists, "INBOX"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Source
			var err error
			if tt.from == "" {
				got, err = tt.tree.Create(tt.to)
			} else {
				var src Source
				src, got, err = tt.tree.Rename(tt.from, tt.to)
				if err == nil {
					want, rerr := tt.tree.Resolve(tt.from)
					if rerr != nil || src != want.Sources[0] {
						t.Errorf("Rename source = %v, want %v (%v)", src, want, rerr)
					}
				}
			}
			if tt.err != nil {
				var te *TreeError
				if !errors.Is(err, tt.err) || !errors.As(err, &te) || !strings.Contains(te.Text, tt.text) {
					t.Fatalf("got %v, %v; want %v with text %q", got, err, tt.err, tt.text)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestUnifiedSources(t *testing.T) {
	tr := testTrees(t)
	byAccount := map[string]map[string]string{
		"main": {`\Sent`: "Sent", `\Trash`: "Trash"},
		"work": {`\sent`: "Sent Items", `\Junk`: "Spam"},
		"home": {`\Sent`: "INBOX.Sent", `\Trash`: "INBOX.Trash"},
		"zzz":  {`\Sent`: "x"}, // not an account of the tree
	}
	tests := []struct {
		tree *Tree
		use  string
		want []Source
	}{
		{tr.merged, `\Sent`, []Source{{"main", "Sent"}, {"work", "Sent Items"}, {"home", "INBOX.Sent"}}},
		{tr.merged, "trash", []Source{{"main", "Trash"}, {"home", "INBOX.Trash"}}},
		{tr.merged, "", []Source{{"main", "INBOX"}, {"work", "INBOX"}, {"home", "INBOX"}}},
		{tr.unified, "INBOX", []Source{{"work", "INBOX"}, {"home", "INBOX"}, {"old", "INBOX"}}},
		{tr.unified, `\Junk`, []Source{{"work", "Spam"}}},
		{tr.unified, `\Archive`, nil},
		{tr.unified, `\All`, nil},
	}
	for _, tt := range tests {
		if got := tt.tree.UnifiedSources(tt.use, byAccount); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("UnifiedSources(%q) = %v, want %v", tt.use, got, tt.want)
		}
	}
}

func TestTreeAccessors(t *testing.T) {
	tr := testTrees(t)
	if got := tr.merged.Prefixes(); !reflect.DeepEqual(got, []string{"Work", "Home"}) {
		t.Errorf("Prefixes = %q", got)
	}
	if got := tr.cyrus.Prefixes(); !reflect.DeepEqual(got, []string{"Work", "Old ISP"}) {
		t.Errorf("Prefixes = %q", got)
	}
	if tr.merged.Primary() != "main" || tr.plain.Primary() != "" {
		t.Error("Primary")
	}
	if !tr.merged.UnifiedInbox() || tr.plain.UnifiedInbox() {
		t.Error("UnifiedInbox")
	}
	if got := tr.merged.UnifiedUses(); !reflect.DeepEqual(got, []string{`\Sent`, `\Trash`}) {
		t.Errorf("UnifiedUses = %q", got)
	}
	if !tr.merged.IsUnified("sent") || !tr.merged.IsUnified(`\Trash`) || tr.merged.IsUnified(`\Drafts`) || tr.merged.IsUnified("bogus") {
		t.Error("IsUnified")
	}
	// A one-account tree whose account is primary.
	solo := mustTree(t, []TreeAccount{dovecotMain}, true, "drafts")
	if _, err := solo.Create("Drafts"); err == nil || !strings.HasSuffix(err.Error(), "create folders at the top level") {
		t.Errorf("Create(Drafts) = %v", err)
	}
}

func TestNewTreeErrors(t *testing.T) {
	tests := []struct {
		name     string
		accounts []TreeAccount
		uses     []string
		msg      string
	}{
		{"no accounts", nil, nil, "no accounts"},
		{"no name", []TreeAccount{{Prefix: "A"}}, nil, "has no name"},
		{"same name", []TreeAccount{{Name: "a", Prefix: "A"}, {Name: "a", Prefix: "B"}}, nil, `two accounts named "a"`},
		{"same prefix", []TreeAccount{{Name: "a", Prefix: "Work"}, {Name: "b", Prefix: "WORK"}}, nil, "the same prefix"},
		{"two primary accounts", []TreeAccount{{Name: "a"}, {Name: "b"}}, nil, "the same prefix"},
		{"slash in a prefix", []TreeAccount{{Name: "a", Prefix: "A/B"}}, nil, `contains "/"`},
		{"INBOX prefix", []TreeAccount{{Name: "a", Prefix: "Inbox"}}, nil, "is INBOX"},
		{"prefix is a unified folder", []TreeAccount{{Name: "a", Prefix: "junk"}}, []string{"Junk"}, "is a unified folder"},
		{"bad use", []TreeAccount{{Name: "a"}}, []string{`\Flagged`}, "not a special use"},
		{"long delimiter", []TreeAccount{{Name: "a", Delimiter: "::"}}, nil, "not one character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewTree(tt.accounts, false, tt.uses)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want %q", err, tt.msg)
			}
		})
	}
}
