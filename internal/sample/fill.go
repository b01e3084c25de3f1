package sample

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// Fill creates the mailboxes of Mailboxes in u, plus any other mailbox a
// message names, and appends msgs in order with their flags and dates
// (messages with a zero Date get the current time). Parents of nested
// mailboxes are created too, mailboxes that already exist are kept, and
// every mailbox is subscribed.
func Fill(u *imapmemserver.User, msgs []Message) error {
	names := Mailboxes()
	known := make(map[string]bool)
	for _, name := range names {
		known[name] = true
	}
	for _, m := range msgs {
		name := mailboxName(m.Mailbox)
		for i, r := range name {
			if r == '/' && !known[name[:i]] && i > 0 {
				known[name[:i]] = true
				names = append(names, name[:i])
			}
		}
		if !known[name] {
			known[name] = true
			names = append(names, name)
		}
	}

	for _, name := range names {
		if err := u.Create(name, nil); err != nil && !alreadyExists(err) {
			return fmt.Errorf("sample: create %q: %w", name, err)
		}
		if err := u.Subscribe(name); err != nil {
			return fmt.Errorf("sample: subscribe %q: %w", name, err)
		}
	}

	for i, m := range msgs {
		name := mailboxName(m.Mailbox)
		opts := &imap.AppendOptions{Flags: m.Flags, Time: m.Date}
		if _, err := u.Append(name, bytes.NewReader(m.Raw), opts); err != nil {
			return fmt.Errorf("sample: append message %d to %q: %w", i, name, err)
		}
	}
	return nil
}

// mailboxName returns the canonical name of a Message's mailbox: "" and
// any case of "inbox" mean INBOX, and trailing delimiters are dropped.
func mailboxName(name string) string {
	name = strings.TrimRight(name, "/")
	if name == "" || strings.EqualFold(name, Inbox) {
		return Inbox
	}
	return name
}

// alreadyExists reports whether err says that a mailbox exists already.
func alreadyExists(err error) bool {
	var imapErr *imap.Error
	return errors.As(err, &imapErr) && imapErr.Code == imap.ResponseCodeAlreadyExists
}
