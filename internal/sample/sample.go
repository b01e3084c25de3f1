// Package sample makes realistic sample mail for the imapproxy demo and for
// tests and benchmarks.
//
// Account returns a small, hand-written mailbox set for a demo account (a
// thread, newsletters with HTML alternatives, an attachment, non-ASCII
// headers and bodies, drafts and sent mail), Fill loads such messages into
// an imapmemserver user, and Generate quickly makes large numbers of
// synthetic plain text messages. Every message uses CRLF line ends.
package sample

import (
	"fmt"
	"hash/fnv"
	"html"
	"math/rand/v2"
	"net/mail"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Message is one sample message.
type Message struct {
	// Mailbox is the name of the mailbox holding the message, with '/' as
	// hierarchy delimiter. Fill treats "" as INBOX.
	Mailbox string
	// Flags are the message's flags, such as imap.FlagSeen.
	Flags []imap.Flag
	// Date is the internal date; for Account messages it matches the Date
	// header.
	Date time.Time
	// Raw is the whole RFC 5322 message with CRLF line ends.
	Raw []byte
}

// Standard mailbox names used by Account and created by Fill.
const (
	Inbox   = "INBOX"
	Sent    = "Sent"
	Drafts  = "Drafts"
	Trash   = "Trash"
	Archive = "Archive"
	// Project is the nested folder, a child of "Projects".
	Project = "Projects/Apollo"
)

// Mailboxes returns the names of the mailboxes Fill always creates, in
// creation order: INBOX, Sent, Drafts, Trash, Archive, Projects and
// Projects/Apollo.
func Mailboxes() []string {
	return []string{Inbox, Sent, Drafts, Trash, Archive, "Projects", Project}
}

// DefaultNow is the reference time Account uses when now is the zero time.
var DefaultNow = time.Date(2025, time.March, 14, 9, 30, 0, 0, time.UTC)

// Account returns the sample mail of one demo account, about twenty
// messages spread over the mailboxes of Mailboxes (Projects itself stays
// empty).
//
// "work" (a software company) and "home" (family and household) are
// written by hand; any other name gets people and domains derived from the
// name, on top of one of those two. The result depends only on name and
// now: message dates lie in the weeks before now (DefaultNow if now is
// zero), and Message-IDs and MIME boundaries are seeded by name. Messages
// are grouped by mailbox in Mailboxes order and sorted by date, oldest
// first, within each mailbox.
func Account(name string, now time.Time) []Message {
	if now.IsZero() {
		now = DefaultNow
	}
	now = now.Truncate(time.Second)
	h := fnv.New64a()
	h.Write([]byte(name))
	seed := h.Sum64()
	rng := rand.New(rand.NewPCG(seed, 0x5a3b1e_0f_d00d))

	var p profile
	switch name {
	case "work":
		p = workProfile
	case "home":
		p = homeProfile
	default:
		p = derive(name, seed, rng)
	}

	a := &assembler{p: &p, rng: rng, now: now}
	pairs := []string{"{me}", firstName(p.owner.Name), "{org}", p.org}
	for i, person := range p.people {
		pairs = append(pairs, fmt.Sprintf("{p%d}", i), firstName(person.Name))
	}
	a.repl = strings.NewReplacer(pairs...)
	return a.account()
}

// firstName returns the first word of a display name.
func firstName(name string) string {
	first, _, _ := strings.Cut(name, " ")
	return first
}

// domainOf returns the domain of an email address.
func domainOf(addr string) string {
	_, d, _ := strings.Cut(addr, "@")
	return d
}

// slug turns name into a DNS label.
func slug(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	s := strings.TrimRight(b.String(), "-")
	if len(s) > 40 {
		s = strings.TrimRight(s[:40], "-")
	}
	if s == "" {
		s = "demo"
	}
	return s
}

// derive makes a profile for an account without hand-written content: the
// messages of work or home, with a new owner, domain and local people.
func derive(name string, seed uint64, rng *rand.Rand) profile {
	base := workProfile
	if seed&1 == 1 {
		base = homeProfile
	}
	label := slug(name)
	domain := label + ".example"
	oldDomain := domainOf(base.owner.Address)

	firsts := rng.Perm(len(firstNames))
	lasts := rng.Perm(len(lastNames))
	next := 0
	person := func() (string, string) {
		f, l := firstNames[firsts[next]], lastNames[lasts[next]]
		next++
		return f + " " + l, strings.ToLower(f + "." + l)
	}

	p := base
	full, local := person()
	p.owner = mail.Address{Name: full, Address: local + "@" + domain}
	p.org = strings.ToUpper(label[:1]) + label[1:] + " Group"
	p.people = append([]mail.Address(nil), base.people...)
	for i := range p.people {
		addr := &p.people[i]
		if domainOf(addr.Address) != oldDomain {
			continue
		}
		user, _, _ := strings.Cut(addr.Address, "@")
		for _, j := range base.local {
			if j == i {
				addr.Name, user = person()
			}
		}
		addr.Address = user + "@" + domain
	}
	return p
}

// assembler turns a profile into messages.
type assembler struct {
	p    *profile
	rng  *rand.Rand
	now  time.Time
	repl *strings.Replacer
	msgs []Message
}

// date returns the time age before now, moved back by a few random minutes
// and seconds, in the profile's time zone.
func (a *assembler) date(age time.Duration) time.Time {
	jitter := time.Duration(a.rng.IntN(20*60)) * time.Second
	return a.now.Add(-age - jitter).In(a.p.zone)
}

// messageID returns a new Message-ID on the sender's domain.
func (a *assembler) messageID(from mail.Address) string {
	return fmt.Sprintf("<%08x.%016x@%s>", a.rng.Uint32(), a.rng.Uint64(), domainOf(from.Address))
}

// boundary returns a new MIME boundary.
func (a *assembler) boundary() string {
	return fmt.Sprintf("=_sample_%016x", a.rng.Uint64())
}

// add renders a message and records it.
func (a *assembler) add(mailbox string, flags []imap.Flag, env envelope, body *part) envelope {
	env.subject = a.repl.Replace(env.subject)
	if env.messageID == "" {
		env.messageID = a.messageID(env.from)
	}
	a.msgs = append(a.msgs, Message{
		Mailbox: mailbox,
		Flags:   flags,
		Date:    env.date,
		Raw:     build(env, body),
	})
	return env
}

// plain adds a text/plain message.
func (a *assembler) plain(mailbox string, flags []imap.Flag, age time.Duration, from mail.Address, to []mail.Address, n note) {
	env := envelope{date: a.date(age), from: from, to: to, subject: n.subject}
	a.add(mailbox, flags, env, textPart("plain", a.repl.Replace(n.body)))
}

// received adds a plain message from people[n.who] to the owner.
func (a *assembler) received(mailbox string, flags []imap.Flag, age time.Duration, n note) {
	a.plain(mailbox, flags, age, a.p.people[n.who], []mail.Address{a.p.owner}, n)
}

// written adds a plain message from the owner to people[n.who].
func (a *assembler) written(mailbox string, flags []imap.Flag, age time.Duration, n note) {
	a.plain(mailbox, flags, age, a.p.owner, []mail.Address{a.p.people[n.who]}, n)
}

// quote returns body with the quoted text of an earlier message below it.
func quote(body string, orig envelope, origBody string) string {
	var b strings.Builder
	b.WriteString(strings.TrimRight(body, "\n"))
	fmt.Fprintf(&b, "\n\nOn %s, %s wrote:\n", orig.date.Format("Mon, 2 Jan 2006 at 15:04"), orig.from.Name)
	for _, l := range strings.Split(strings.TrimRight(origBody, "\n"), "\n") {
		if l == "" {
			b.WriteString(">\n")
		} else {
			b.WriteString("> " + l + "\n")
		}
	}
	return b.String()
}

// conversation adds the thread: the opening in INBOX (answered), the
// owner's reply in Sent and a follow-up in INBOX.
func (a *assembler) conversation() {
	t := a.p.thread
	first, second := a.p.people[0], a.p.people[1]

	openBody := a.repl.Replace(t.opening)
	open := a.add(Inbox, []imap.Flag{imap.FlagSeen, imap.FlagAnswered}, envelope{
		date: a.date(2 * 24 * time.Hour), from: first,
		to: []mail.Address{a.p.owner}, cc: []mail.Address{second},
		subject: t.subject,
	}, textPart("plain", openBody))

	replyBody := quote(a.repl.Replace(t.reply), open, openBody)
	reply := a.add(Sent, []imap.Flag{imap.FlagSeen}, envelope{
		date: a.date(44 * time.Hour), from: a.p.owner,
		to: []mail.Address{first}, cc: []mail.Address{second},
		subject:   "Re: " + t.subject,
		inReplyTo: open.messageID, references: []string{open.messageID},
	}, textPart("plain", replyBody))

	a.add(Inbox, nil, envelope{
		date: a.date(2 * time.Hour), from: second,
		to: []mail.Address{a.p.owner}, cc: []mail.Address{first},
		subject:   "Re: " + t.subject,
		inReplyTo: reply.messageID, references: []string{open.messageID, reply.messageID},
	}, textPart("plain", quote(a.repl.Replace(t.followup), reply, replyBody)))
}

// newsletter adds a bulletin as multipart/alternative, plain text and HTML.
func (a *assembler) newsletter(flags []imap.Flag, age time.Duration, n bulletin) {
	from := a.p.people[n.who]
	var text, body strings.Builder
	text.WriteString(strings.ToUpper(a.repl.Replace(n.headline)) + "\n")
	fmt.Fprintf(&body, "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>%s</title>\n</head>\n",
		html.EscapeString(a.repl.Replace(n.subject)))
	body.WriteString("<body style=\"font-family: Helvetica, Arial, sans-serif; color: #222;\">\n")
	body.WriteString("<table width=\"600\" cellpadding=\"16\" style=\"margin: 0 auto;\">\n")
	fmt.Fprintf(&body, "<tr><td style=\"background: #1d4e89; color: #fff;\"><h1>%s</h1></td></tr>\n",
		html.EscapeString(a.repl.Replace(n.headline)))
	for _, s := range n.sections {
		title, para := a.repl.Replace(s.title), a.repl.Replace(s.text)
		fmt.Fprintf(&text, "\n%s\n%s\n", title, wrap(para, 72))
		fmt.Fprintf(&body, "<tr><td>\n<h2>%s</h2>\n<p>%s</p>\n</td></tr>\n",
			html.EscapeString(title), wrap(html.EscapeString(para), 72))
	}
	footer := a.repl.Replace(n.footer)
	fmt.Fprintf(&text, "\n--\n%s\n", wrap(footer, 72))
	fmt.Fprintf(&body, "<tr><td style=\"font-size: 11px; color: #888;\">%s</td></tr>\n</table>\n</body>\n</html>\n",
		html.EscapeString(footer))

	env := envelope{
		date: a.date(age), from: from, to: []mail.Address{a.p.owner},
		subject: n.subject,
		extra: []field{
			{"List-Unsubscribe", "<mailto:unsubscribe@" + domainOf(from.Address) + ">"},
		},
	}
	a.add(Inbox, flags, env, container("alternative", a.boundary(),
		textPart("plain", text.String()), textPart("html", body.String())))
}

// wrap breaks s into lines of at most width characters at spaces.
func wrap(s string, width int) string {
	var b strings.Builder
	n := 0
	for _, w := range strings.Fields(s) {
		if n > 0 && n+1+len(w) > width {
			b.WriteByte('\n')
			n = 0
		} else if n > 0 {
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

// attachment adds the invoice as multipart/mixed with a PDF.
func (a *assembler) attachment(flags []imap.Flag, age time.Duration, inv invoice) {
	lines := make([]string, len(inv.lines))
	for i, l := range inv.lines {
		lines[i] = a.repl.Replace(l)
	}
	pdf := tinyPDF(a.repl.Replace(inv.title), lines)
	env := envelope{
		date: a.date(age), from: a.p.people[inv.who], to: []mail.Address{a.p.owner},
		subject: inv.subject,
	}
	a.add(Inbox, flags, env, container("mixed", a.boundary(),
		textPart("plain", a.repl.Replace(inv.body)),
		attachmentPart("application/pdf", inv.filename, pdf)))
}

// account assembles all messages of the profile.
func (a *assembler) account() []Message {
	p := a.p
	seen := []imap.Flag{imap.FlagSeen}
	day := 24 * time.Hour

	// INBOX: eleven messages, five unseen.
	a.received(Inbox, nil, 50*time.Minute, p.inbox[0])
	a.newsletter(nil, 5*time.Hour, p.news)
	a.received(Inbox, nil, 8*time.Hour, p.intl)
	a.received(Inbox, seen, day+time.Hour, p.inbox[1])
	a.attachment([]imap.Flag{imap.FlagSeen, imap.FlagFlagged}, day+3*time.Hour, p.bill)
	a.newsletter(seen, 2*day+5*time.Hour, p.promo)
	a.received(Inbox, seen, 3*day, p.inbox[2])
	a.received(Inbox, seen, 4*day, p.inbox[3])
	a.received(Inbox, seen, 6*day, p.inbox[4])
	a.conversation() // two in INBOX, one in Sent

	a.written(Sent, seen, 3*day+2*time.Hour, p.sent[0])
	a.written(Sent, seen, 5*day+4*time.Hour, p.sent[1])
	a.written(Drafts, []imap.Flag{imap.FlagSeen, imap.FlagDraft}, 3*time.Hour, p.draft)
	a.received(Trash, seen, 9*day, p.trash[0])
	a.received(Trash, seen, 12*day, p.trash[1])
	a.received(Archive, seen, 20*day, p.archive[0])
	a.received(Archive, seen, 34*day, p.archive[1])
	a.received(Project, nil, day+6*time.Hour, p.project[0])
	a.received(Project, seen, 7*day, p.project[1])

	order := make(map[string]int)
	for i, name := range Mailboxes() {
		order[name] = i
	}
	msgs := a.msgs
	sort.SliceStable(msgs, func(i, j int) bool {
		oi, oj := order[msgs[i].Mailbox], order[msgs[j].Mailbox]
		if oi != oj {
			return oi < oj
		}
		return msgs[i].Date.Before(msgs[j].Date)
	})
	return msgs
}
