package merge

// This file chooses where an APPEND goes: an account's folder is its own
// target; a unified folder's is the account of the first append rule
// that matches the message's From and To (config [[user.append_rule]]),
// else the default account. Only the message's header is read for this,
// at most maxRuleHeader bytes of the client's literal, which then go
// upstream ahead of the rest of it.

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/mail"
	"regexp"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"

	"imapproxy/router"
)

// maxRuleHeader bounds the bytes of a message read to match append rules:
// a header that does not end within it is matched on what it holds.
const maxRuleHeader = 64 << 10

// AppendRule places a message appended to a unified folder by its
// addresses. It matches when each of its non-empty lists matches: From
// when one of the message's From addresses is listed, To when one of its
// To addresses is. An entry is an address ("carol@example.com") or a
// domain ("@example.com"); both are compared without case.
type AppendRule struct {
	From []string
	To   []string
	// Account is the name of the account the message goes to.
	Account string
}

// matches reports whether r matches a message with the given From and To
// addresses.
func (r AppendRule) matches(from, to []string) bool {
	if len(r.From) == 0 && len(r.To) == 0 {
		return false
	}
	return (len(r.From) == 0 || anyAddressMatches(r.From, from)) &&
		(len(r.To) == 0 || anyAddressMatches(r.To, to))
}

// anyAddressMatches reports whether one of addrs matches one of entries.
func anyAddressMatches(entries, addrs []string) bool {
	for _, a := range addrs {
		for _, e := range entries {
			if addressMatches(e, a) {
				return true
			}
		}
	}
	return false
}

// addressMatches reports whether addr is entry ("local@domain") or lies
// in entry's domain ("@domain"), without regard to case.
func addressMatches(entry, addr string) bool {
	if strings.HasPrefix(entry, "@") {
		i := strings.LastIndexByte(addr, '@')
		return i >= 0 && strings.EqualFold(addr[i:], entry)
	}
	return strings.EqualFold(entry, addr)
}

// ruleAccount returns the account of the first rule that matches the
// message whose header is head, and false when none does.
func ruleAccount(rules []AppendRule, head []byte) (string, bool) {
	from, to := headerAddresses(head)
	for _, r := range rules {
		if r.matches(from, to) {
			return r.Account, true
		}
	}
	return "", false
}

// headerAddresses returns the addresses of the From and To fields of the
// message header head (which may be cut short, or followed by some of the
// body). A field that does not parse as an address list yields what looks
// like addresses in it.
func headerAddresses(head []byte) (from, to []string) {
	for name, value := range headerFields(head) {
		switch {
		case strings.EqualFold(name, "From"):
			from = append(from, parseAddresses(value)...)
		case strings.EqualFold(name, "To"):
			to = append(to, parseAddresses(value)...)
		}
	}
	return from, to
}

// headerFields yields the fields of a message header, unfolded, up to the
// empty line that ends it (or the end of head; a last line cut short is
// left out when head holds no end of the header).
func headerFields(head []byte) func(yield func(name, value string) bool) {
	return func(yield func(name, value string) bool) {
		var name string
		var value []byte
		emit := func() bool {
			if name == "" {
				return true
			}
			ok := yield(name, string(value))
			name, value = "", nil
			return ok
		}
		for len(head) > 0 {
			line, rest, complete := bytes.Cut(head, []byte("\n"))
			if !complete {
				break // cut short
			}
			head = rest
			line = bytes.TrimSuffix(line, []byte("\r"))
			if len(line) == 0 {
				break // end of the header
			}
			if line[0] == ' ' || line[0] == '\t' {
				if name != "" {
					value = append(value, line...)
				}
				continue
			}
			if !emit() {
				return
			}
			if n, v, ok := bytes.Cut(line, []byte(":")); ok {
				name = strings.TrimSpace(string(n))
				value = append(value[:0], v...)
			}
		}
		emit()
	}
}

// addressParser parses address lists whatever the charset of their
// encoded words: only the addresses matter here.
var addressParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
}}

// looseAddress finds address-like words in a field that does not parse.
var looseAddress = regexp.MustCompile(`[^\s<>,;:"()\[\]@]+@[^\s<>,;:"()\[\]@]+`)

// parseAddresses returns the addresses of an address-list field value.
func parseAddresses(value string) []string {
	list, err := addressParser.ParseList(value)
	if err == nil {
		out := make([]string, 0, len(list))
		for _, a := range list {
			out = append(out, a.Address)
		}
		return out
	}
	return looseAddress.FindAllString(value, -1)
}

// readHead reads from r until the end of the message header (an empty
// line) has been read, r ends, or limit bytes have been read, and returns
// what it read: the header, perhaps with the start of the body.
func readHead(r io.Reader, limit int) ([]byte, error) {
	buf := make([]byte, 0, min(limit, 4096))
	for len(buf) < limit {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(cap(buf), limit-len(buf)))
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), limit)])
		start := max(0, len(buf)-3) // an end may straddle two reads
		buf = buf[:len(buf)+n]
		switch {
		case headerEnded(buf, start), errors.Is(err, io.EOF):
			return buf, nil
		case err != nil:
			return buf, err
		}
	}
	return buf, nil
}

// headerEnded reports whether buf holds the end of a header, looking from
// from on: an empty first line, or a line end followed by an empty line.
func headerEnded(buf []byte, from int) bool {
	if from == 0 && (bytes.HasPrefix(buf, []byte("\r\n")) || bytes.HasPrefix(buf, []byte("\n"))) {
		return true
	}
	tail := buf[from:]
	return bytes.Contains(tail, []byte("\n\r\n")) || bytes.Contains(tail, []byte("\n\n"))
}

// appendTarget resolves where an APPEND to the virtual folder name goes,
// and returns the message to send there, which is r, or, when the
// header had to be read to match the append rules, the header read
// followed by the rest of r.
func (s *Session) appendTarget(name string, r io.Reader) (target, io.Reader, error) {
	tree, accounts, err := s.hub.tree(s.ctx)
	if err != nil {
		return target{}, r, err
	}
	storeName, t, err := s.hub.resolve(s.ctx, tree, accounts, name)
	if err != nil {
		return target{}, r, err
	}
	if len(t.Sources) == 0 {
		return target{}, r, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No account has such a folder"}
	}
	if !t.Unified {
		return target{storeName: storeName, src: t.Sources[0]}, r, nil
	}
	account := s.spec.DefaultAccount
	if len(s.spec.AppendRules) > 0 {
		head, err := readHead(r, maxRuleHeader)
		if err != nil {
			return target{}, r, err
		}
		r = io.MultiReader(bytes.NewReader(head), r)
		if a, ok := ruleAccount(s.spec.AppendRules, head); ok {
			account = a
		}
	}
	src, ok := sourceOf(t.Sources, account)
	if !ok && !strings.EqualFold(account, s.spec.DefaultAccount) {
		s.log.Warn("append: the rule's account has no such folder, the default account takes the message",
			"mailbox", storeName, "account", account)
		src, ok = sourceOf(t.Sources, s.spec.DefaultAccount)
	}
	if !ok {
		src = t.Sources[0]
	}
	return target{storeName: storeName, src: src}, r, nil
}

// sourceOf returns the source of sources that belongs to account (account
// names are compared without case, as the configuration does).
func sourceOf(sources []router.Source, account string) (router.Source, bool) {
	i := slices.IndexFunc(sources, func(x router.Source) bool { return strings.EqualFold(x.Account, account) })
	if i < 0 {
		return router.Source{}, false
	}
	return sources[i], true
}
