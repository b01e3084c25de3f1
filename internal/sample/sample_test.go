package sample

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

var testNow = time.Date(2025, time.June, 2, 15, 4, 5, 0, time.UTC)

// checkCRLF fails unless every line of raw ends in CRLF and no line is
// longer than RFC 5322 allows.
func checkCRLF(t *testing.T, what string, raw []byte) {
	t.Helper()
	if !bytes.HasSuffix(raw, []byte("\r\n")) {
		t.Errorf("%s: does not end in CRLF", what)
	}
	for i, line := range bytes.Split(raw, []byte("\r\n")) {
		if bytes.ContainsAny(line, "\r\n") {
			t.Errorf("%s: line %d has a bare CR or LF: %q", what, i+1, line)
			return
		}
		if len(line) > 998 {
			t.Errorf("%s: line %d is %d bytes long", what, i+1, len(line))
		}
	}
}

// leaf is one decoded body part.
type leaf struct {
	mediaType, filename string
	body                []byte
}

// leaves parses a message or part and returns its decoded leaves.
func leaves(t *testing.T, header mail.Header, body io.Reader) []leaf {
	t.Helper()
	ctype := header.Get("Content-Type")
	mediaType, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		t.Fatalf("Content-Type %q: %v", ctype, err)
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		var out []leaf
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", mediaType, err)
			}
			out = append(out, leaves(t, mail.Header(p.Header), p)...)
		}
		if len(out) < 2 {
			t.Errorf("%s with %d parts", mediaType, len(out))
		}
		return append([]leaf{{mediaType: mediaType}}, out...)
	}
	var r io.Reader = body
	switch cte := strings.ToLower(header.Get("Content-Transfer-Encoding")); cte {
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, body)
	case "7bit", "":
	default:
		t.Errorf("unexpected Content-Transfer-Encoding %q", cte)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("%s: decode: %v", mediaType, err)
	}
	if strings.HasPrefix(mediaType, "text/") {
		if params["charset"] == "us-ascii" && !isASCII(string(data)) {
			t.Errorf("%s: us-ascii part holds 8-bit data", mediaType)
		}
		if !utf8.Valid(data) {
			t.Errorf("%s: invalid UTF-8", mediaType)
		}
	}
	_, dparams, _ := mime.ParseMediaType(header.Get("Content-Disposition"))
	return []leaf{{mediaType: mediaType, filename: dparams["filename"], body: data}}
}

func TestAccount(t *testing.T) {
	for _, name := range []string{"work", "home", "alice", "bob@example", ""} {
		t.Run(name, func(t *testing.T) {
			msgs := Account(name, testNow)
			if len(msgs) < 15 || len(msgs) > 25 {
				t.Fatalf("%d messages", len(msgs))
			}

			ids := make(map[string]bool)
			var (
				dec                               mime.WordDecoder
				flagged, answered, drafts         int
				alternative, attachment, intlSubj bool
				intlBody, html                    bool
				replies                           []*mail.Message
				perMailbox                        = make(map[string]int)
				lastMailbox                       string
				lastDate                          time.Time
				owner                             string
				boxOrder                          = Mailboxes()
				prevBoxIndex                      = -1
				requiredFields                    = []string{"Date", "From", "To", "Subject", "Message-ID", "MIME-Version", "Content-Type"}
				sentFrom                          = make(map[string]bool)
				inboxCount, inboxSeen, unseen     int
			)
			for i, m := range msgs {
				what := fmt.Sprintf("message %d (%s)", i, m.Mailbox)
				checkCRLF(t, what, m.Raw)
				pm, err := mail.ReadMessage(bytes.NewReader(m.Raw))
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				for _, f := range requiredFields {
					if n := len(pm.Header[textproto.CanonicalMIMEHeaderKey(f)]); n != 1 {
						t.Errorf("%s: %d %s fields", what, n, f)
					}
				}
				date, err := pm.Header.Date()
				if err != nil {
					t.Errorf("%s: Date: %v", what, err)
				} else if !date.Equal(m.Date) {
					t.Errorf("%s: Date header %v, Message.Date %v", what, date, m.Date)
				}
				if !m.Date.Before(testNow) || m.Date.Before(testNow.AddDate(0, 0, -60)) {
					t.Errorf("%s: date %v not within 60 days before now", what, m.Date)
				}
				if _, err := pm.Header.AddressList("To"); err != nil {
					t.Errorf("%s: To: %v", what, err)
				}
				from, err := pm.Header.AddressList("From")
				if err != nil || len(from) != 1 {
					t.Fatalf("%s: From: %v", what, err)
				}
				id := pm.Header.Get("Message-ID")
				if !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, ">") || !strings.Contains(id, "@") {
					t.Errorf("%s: Message-ID %q", what, id)
				}
				if ids[id] {
					t.Errorf("%s: duplicate Message-ID %s", what, id)
				}
				ids[id] = true
				if pm.Header.Get("MIME-Version") != "1.0" {
					t.Errorf("%s: MIME-Version %q", what, pm.Header.Get("MIME-Version"))
				}
				subject, err := dec.DecodeHeader(pm.Header.Get("Subject"))
				if err != nil {
					t.Errorf("%s: Subject: %v", what, err)
				}
				if strings.Contains(subject, "{") {
					t.Errorf("%s: unexpanded placeholder in subject %q", what, subject)
				}
				if !isASCII(subject) {
					intlSubj = true
					if !isASCII(pm.Header.Get("Subject")) {
						t.Errorf("%s: raw 8-bit Subject", what)
					}
				}
				if pm.Header.Get("In-Reply-To") != "" {
					replies = append(replies, pm)
				}

				parts := leaves(t, mail.Header(pm.Header), pm.Body)
				for _, p := range parts {
					switch {
					case p.mediaType == "multipart/alternative":
						alternative = true
					case p.mediaType == "text/html":
						html = bytes.Contains(p.body, []byte("</html>"))
					case p.filename != "":
						attachment = true
						if !bytes.HasPrefix(p.body, []byte("%PDF-1.4\n")) || !bytes.HasSuffix(p.body, []byte("%%EOF\n")) {
							t.Errorf("%s: attachment %q is not a PDF", what, p.filename)
						}
					case p.mediaType == "text/plain" && !isASCII(string(p.body)):
						intlBody = true
					}
					if bytes.Contains(p.body, []byte("{p")) || bytes.Contains(p.body, []byte("{me}")) {
						t.Errorf("%s: unexpanded placeholder in %s", what, p.mediaType)
					}
				}

				if slices.Contains(m.Flags, imap.FlagFlagged) {
					flagged++
				}
				if slices.Contains(m.Flags, imap.FlagAnswered) {
					answered++
				}
				if slices.Contains(m.Flags, imap.FlagDraft) {
					drafts++
					if m.Mailbox != Drafts {
						t.Errorf("%s: \\Draft outside Drafts", what)
					}
				}
				switch m.Mailbox {
				case Sent, Drafts:
					sentFrom[from[0].Address] = true
				case Inbox:
					inboxCount++
					if slices.Contains(m.Flags, imap.FlagSeen) {
						inboxSeen++
					}
				}
				if !slices.Contains(m.Flags, imap.FlagSeen) {
					unseen++
				}

				// Grouped by mailbox in Mailboxes order, oldest first.
				bi := slices.Index(boxOrder, m.Mailbox)
				if bi < 0 {
					t.Errorf("%s: unknown mailbox", what)
				}
				if bi < prevBoxIndex {
					t.Errorf("%s: mailboxes out of order", what)
				}
				if m.Mailbox == lastMailbox && m.Date.Before(lastDate) {
					t.Errorf("%s: older than the message before it", what)
				}
				prevBoxIndex, lastMailbox, lastDate = bi, m.Mailbox, m.Date
				perMailbox[m.Mailbox]++
			}

			for _, box := range []string{Inbox, Sent, Drafts, Trash, Archive, Project} {
				if perMailbox[box] == 0 {
					t.Errorf("no message in %s", box)
				}
			}
			if flagged != 1 || answered < 1 || drafts < 1 {
				t.Errorf("flagged %d, answered %d, drafts %d", flagged, answered, drafts)
			}
			if inboxSeen == 0 || inboxSeen == inboxCount || unseen == 0 {
				t.Errorf("INBOX: %d of %d seen", inboxSeen, inboxCount)
			}
			if len(sentFrom) != 1 {
				t.Errorf("Sent and Drafts from %v, want the owner only", sentFrom)
			}
			for addr := range sentFrom {
				owner = addr
			}
			if !alternative || !html || !attachment || !intlSubj || !intlBody {
				t.Errorf("alternative %v, html %v, attachment %v, non-ASCII subject %v, UTF-8 body %v",
					alternative, html, attachment, intlSubj, intlBody)
			}

			// The thread: every In-Reply-To and Reference is a known
			// message, and one reply cites two earlier messages.
			longest := 0
			for _, r := range replies {
				if !ids[r.Header.Get("In-Reply-To")] {
					t.Errorf("In-Reply-To %s is unknown", r.Header.Get("In-Reply-To"))
				}
				refs := strings.Fields(r.Header.Get("References"))
				for _, ref := range refs {
					if !ids[ref] {
						t.Errorf("reference %s is unknown", ref)
					}
				}
				if len(refs) == 0 || refs[len(refs)-1] != r.Header.Get("In-Reply-To") {
					t.Errorf("References %q do not end with In-Reply-To", refs)
				}
				longest = max(longest, len(refs))
			}
			if len(replies) < 2 || longest < 2 {
				t.Errorf("%d replies, longest References %d", len(replies), longest)
			}
			t.Logf("%d messages, owner %s, per mailbox %v", len(msgs), owner, perMailbox)
		})
	}
}

func TestAccountDeterministic(t *testing.T) {
	a, b := Account("work", testNow), Account("work", testNow)
	if len(a) != len(b) {
		t.Fatal("lengths differ")
	}
	for i := range a {
		if !bytes.Equal(a[i].Raw, b[i].Raw) || !a[i].Date.Equal(b[i].Date) ||
			a[i].Mailbox != b[i].Mailbox || !slices.Equal(a[i].Flags, b[i].Flags) {
			t.Fatalf("message %d differs between calls", i)
		}
	}

	// Dates follow now.
	later := Account("work", testNow.Add(48*time.Hour))
	for i := range a {
		if d := later[i].Date.Sub(a[i].Date); d != 48*time.Hour {
			t.Errorf("message %d moved by %v", i, d)
		}
	}

	// The zero time means DefaultNow.
	z, d := Account("home", time.Time{}), Account("home", DefaultNow)
	for i := range z {
		if !bytes.Equal(z[i].Raw, d[i].Raw) {
			t.Fatalf("message %d: zero now differs from DefaultNow", i)
		}
	}

	// Accounts differ in senders, subjects and domains.
	summary := func(name string) (subjects, senders map[string]bool) {
		subjects, senders = make(map[string]bool), make(map[string]bool)
		for _, m := range Account(name, testNow) {
			pm, err := mail.ReadMessage(bytes.NewReader(m.Raw))
			if err != nil {
				t.Fatal(err)
			}
			subjects[pm.Header.Get("Subject")] = true
			from, _ := pm.Header.AddressList("From")
			senders[from[0].Address] = true
		}
		return
	}
	workSubj, workFrom := summary("work")
	homeSubj, homeFrom := summary("home")
	aliceSubj, aliceFrom := summary("alice")
	for s := range workSubj {
		if homeSubj[s] {
			t.Errorf("work and home share subject %q", s)
		}
	}
	for s := range workFrom {
		if homeFrom[s] {
			t.Errorf("work and home share sender %q", s)
		}
	}
	// A derived account keeps outside senders but renames its own domain.
	for s := range aliceFrom {
		if strings.HasSuffix(s, "@northwind-labs.example") || strings.HasSuffix(s, "@rivera-family.example") {
			t.Errorf("alice: sender %q from a hand-written account", s)
		}
	}
	if len(aliceSubj) < 10 {
		t.Errorf("alice: %d subjects", len(aliceSubj))
	}
	owner := false
	for s := range aliceFrom {
		if strings.HasSuffix(s, "@alice.example") {
			owner = true
		}
	}
	if !owner {
		t.Errorf("alice: no sender at alice.example: %v", aliceFrom)
	}
}

// serve runs an IMAP server for mem on 127.0.0.1 and returns a logged-in
// client.
func serve(t *testing.T, mem *imapmemserver.Server, user, pass string) *imapclient.Client {
	t.Helper()
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := imapclient.New(conn, nil)
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFill(t *testing.T) {
	mem := imapmemserver.New()
	user := imapmemserver.NewUser("demo", "demo")
	mem.AddUser(user)
	// An existing INBOX is kept.
	if err := user.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	msgs := Account("work", testNow)
	extra := Generate(7, 3, 1024)
	for _, raw := range extra {
		msgs = append(msgs, Message{Mailbox: "Lists/Go/nuts", Raw: raw, Flags: []imap.Flag{imap.FlagSeen}})
	}
	if err := Fill(user, msgs); err != nil {
		t.Fatal(err)
	}

	c := serve(t, mem, "demo", "demo")

	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range list {
		names = append(names, l.Mailbox)
		if l.Delim != '/' {
			t.Errorf("%s: delimiter %q", l.Mailbox, l.Delim)
		}
	}
	want := append(Mailboxes(), "Lists", "Lists/Go", "Lists/Go/nuts")
	slices.Sort(want)
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Errorf("LIST * = %q, want %q", names, want)
	}
	subscribed, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(subscribed) != len(want) {
		t.Errorf("%d subscribed mailboxes, want %d", len(subscribed), len(want))
	}

	// Expected counts per mailbox.
	type counts struct{ total, seen, flagged, answered, draft int }
	expect := make(map[string]*counts)
	for _, name := range want {
		expect[name] = &counts{}
	}
	for _, m := range msgs {
		n := expect[mailboxName(m.Mailbox)]
		n.total++
		for _, f := range m.Flags {
			switch f {
			case imap.FlagSeen:
				n.seen++
			case imap.FlagFlagged:
				n.flagged++
			case imap.FlagAnswered:
				n.answered++
			case imap.FlagDraft:
				n.draft++
			}
		}
	}

	var all []*imapclient.FetchMessageBuffer
	for _, name := range want {
		exp := expect[name]
		st, err := c.Status(name, &imap.StatusOptions{NumMessages: true, NumUnseen: true}).Wait()
		if err != nil {
			t.Fatalf("STATUS %s: %v", name, err)
		}
		if *st.NumMessages != uint32(exp.total) || *st.NumUnseen != uint32(exp.total-exp.seen) {
			t.Errorf("%s: %d messages, %d unseen; want %d, %d",
				name, *st.NumMessages, *st.NumUnseen, exp.total, exp.total-exp.seen)
		}
		if exp.total == 0 {
			continue
		}
		if _, err := c.Select(name, nil).Wait(); err != nil {
			t.Fatalf("SELECT %s: %v", name, err)
		}
		for flag, n := range map[imap.Flag]int{
			imap.FlagFlagged: exp.flagged, imap.FlagAnswered: exp.answered, imap.FlagDraft: exp.draft,
		} {
			data, err := c.Search(&imap.SearchCriteria{Flag: []imap.Flag{flag}}, nil).Wait()
			if err != nil {
				t.Fatalf("SEARCH %s in %s: %v", flag, name, err)
			}
			if got := len(data.AllSeqNums()); got != n {
				t.Errorf("%s: %d messages with %s, want %d", name, got, flag, n)
			}
		}
		fetched, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{
			Flags: true, Envelope: true, InternalDate: true, RFC822Size: true,
			BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		}).Collect()
		if err != nil {
			t.Fatalf("FETCH in %s: %v", name, err)
		}
		if len(fetched) != exp.total {
			t.Errorf("%s: fetched %d messages, want %d", name, len(fetched), exp.total)
		}
		all = append(all, fetched...)
	}

	// The server parsed every message: envelopes, structure and dates.
	var pdf, alternative bool
	byID := make(map[string]Message)
	for _, m := range msgs {
		pm, _ := mail.ReadMessage(bytes.NewReader(m.Raw))
		byID[strings.Trim(pm.Header.Get("Message-ID"), "<>")] = m
	}
	for _, f := range all {
		if f.Envelope == nil || f.Envelope.Subject == "" || len(f.Envelope.From) != 1 {
			t.Errorf("bad envelope %+v", f.Envelope)
			continue
		}
		m, ok := byID[strings.Trim(f.Envelope.MessageID, "<>")]
		if !ok {
			t.Errorf("unknown Message-ID %q", f.Envelope.MessageID)
			continue
		}
		if f.RFC822Size != int64(len(m.Raw)) {
			t.Errorf("%s: size %d, want %d", f.Envelope.MessageID, f.RFC822Size, len(m.Raw))
		}
		if !m.Date.IsZero() && !f.InternalDate.Equal(m.Date) {
			t.Errorf("%s: internal date %v, want %v", f.Envelope.MessageID, f.InternalDate, m.Date)
		}
		f.BodyStructure.Walk(func(path []int, part imap.BodyStructure) bool {
			switch p := part.(type) {
			case *imap.BodyStructureMultiPart:
				if p.MediaType() == "multipart/alternative" {
					alternative = true
				}
			case *imap.BodyStructureSinglePart:
				if p.MediaType() == "application/pdf" && p.Filename() != "" {
					pdf = true
				}
			}
			return true
		})
	}
	if !pdf || !alternative {
		t.Errorf("server saw pdf %v, alternative %v", pdf, alternative)
	}

	// Filling again keeps the mailboxes and appends once more.
	if err := Fill(user, msgs[:1]); err != nil {
		t.Fatal(err)
	}
	st, err := user.Status(Inbox, &imap.StatusOptions{NumMessages: true})
	if err != nil {
		t.Fatal(err)
	}
	if *st.NumMessages != uint32(expect[Inbox].total+1) {
		t.Errorf("INBOX after second Fill: %d messages", *st.NumMessages)
	}
}

func TestGenerate(t *testing.T) {
	const n, size = 500, 2048
	a := Generate(42, n, size)
	b := Generate(42, n, size)
	c := Generate(43, n, size)
	if len(a) != n {
		t.Fatalf("%d messages", len(a))
	}
	same := 0
	ids := make(map[string]bool)
	var prev time.Time
	replies := 0
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("message %d differs for the same seed", i)
		}
		if bytes.Equal(a[i], c[i]) {
			same++
		}
		if len(a[i]) < size-2 || len(a[i]) > size {
			t.Errorf("message %d is %d bytes", i, len(a[i]))
		}
		checkCRLF(t, fmt.Sprintf("message %d", i), a[i])
		pm, err := mail.ReadMessage(bytes.NewReader(a[i]))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		for _, f := range []string{"Date", "From", "To", "Subject", "Message-ID", "MIME-Version", "Content-Type"} {
			if pm.Header.Get(f) == "" {
				t.Errorf("message %d: no %s", i, f)
			}
		}
		date, err := pm.Header.Date()
		if err != nil {
			t.Errorf("message %d: %v", i, err)
		}
		if date.Before(prev) {
			t.Errorf("message %d: date %v before %v", i, date, prev)
		}
		prev = date
		if _, err := pm.Header.AddressList("From"); err != nil {
			t.Errorf("message %d: From: %v", i, err)
		}
		id := pm.Header.Get("Message-ID")
		if ids[id] {
			t.Errorf("message %d: duplicate Message-ID %s", i, id)
		}
		ids[id] = true
		if irt := pm.Header.Get("In-Reply-To"); irt != "" {
			replies++
			if !ids[irt] {
				t.Errorf("message %d: In-Reply-To %s is not an earlier message", i, irt)
			}
		}
		body, _ := io.ReadAll(pm.Body)
		if len(bytes.TrimSpace(body)) == 0 || !isASCII(string(body)) {
			t.Errorf("message %d: empty or 8-bit body", i)
		}
	}
	if same > 0 {
		t.Errorf("%d messages identical across seeds", same)
	}
	if replies == 0 {
		t.Error("no replies")
	}
	for _, id := range []string{"<2a.0@" + genDomain + ">", "<2a.499@" + genDomain + ">"} {
		if !ids[id] {
			t.Errorf("Message-ID %s missing", id)
		}
	}

	// Sizes below the header size still give valid messages.
	for _, size := range []int{0, 1, 100, 400, 600, 601, 602, 603, 10000} {
		for i, raw := range Generate(1, 20, size) {
			checkCRLF(t, fmt.Sprintf("size %d, message %d", size, i), raw)
			if _, err := mail.ReadMessage(bytes.NewReader(raw)); err != nil {
				t.Errorf("size %d, message %d: %v", size, i, err)
			}
			if size >= 600 && (len(raw) < size-2 || len(raw) > size) {
				t.Errorf("size %d, message %d: %d bytes", size, i, len(raw))
			}
		}
	}
	if Generate(1, 0, 100) != nil || Generate(1, -1, 100) != nil {
		t.Error("n <= 0 gives messages")
	}
}

func TestGenerateSpeed(t *testing.T) {
	start := time.Now()
	msgs := Generate(1, 10000, 2048)
	elapsed := time.Since(start)
	total := 0
	for _, m := range msgs {
		total += len(m)
	}
	t.Logf("Generate(1, 10000, 2048): %v for %.1f MB", elapsed, float64(total)/1e6)
}

func BenchmarkGenerate(b *testing.B) {
	b.SetBytes(1000 * 2048)
	for b.Loop() {
		Generate(int64(b.N), 1000, 2048)
	}
}
