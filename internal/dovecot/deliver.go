package dovecot

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Message is a message for DeliverMessages.
type Message struct {
	// Body is the whole RFC 5322 message. CRLF line ends are stored as LF,
	// as maildir wants; Dovecot serves them as CRLF again.
	Body []byte
	// Flags are system flags: \Seen, \Answered, \Flagged, \Deleted, \Draft.
	Flags []string
	// Date is the INTERNALDATE (the file's mtime); zero means now.
	Date time.Time
}

// maildirFlags maps IMAP system flags to maildir info letters.
var maildirFlags = map[string]byte{
	`\draft`: 'D', `\flagged`: 'F', `\answered`: 'R', `\seen`: 'S', `\deleted`: 'T',
}

// Deliver adds messages to a user's mailbox, creating the mailbox if
// needed. Messages get UIDs in the order given.
func (s *Server) Deliver(user, mailbox string, msgs ...[]byte) error {
	m := make([]Message, len(msgs))
	for i, body := range msgs {
		m[i].Body = body
	}
	return s.DeliverMessages(user, mailbox, m...)
}

// DeliverMessages adds messages with flags and dates to a user's mailbox,
// creating the mailbox if needed. It writes maildir files directly, the way
// a delivery agent does (tmp/ then a rename into cur/), so a running
// instance picks them up at its next sync and large benchmark mailboxes
// fill at file-system speed. Messages get UIDs in the order given.
// Keywords are not supported. It is safe for concurrent use.
func (s *Server) DeliverMessages(user, mailbox string, msgs ...Message) error {
	dir, err := s.maildir(user, mailbox)
	if err != nil {
		return err
	}
	s.deliverMu.Lock()
	first := s.deliverSeq
	s.deliverSeq += int64(len(msgs))
	s.deliverMu.Unlock()

	base := time.Now().Unix()
	for i, m := range msgs {
		info, err := infoFlags(m.Flags)
		if err != nil {
			return err
		}
		if err := s.deliverOne(dir, base, first+int64(i), m, info); err != nil {
			return err
		}
	}
	return nil
}

// deliverOne writes message number seq of this instance into dir.
func (s *Server) deliverOne(dir string, base, seq int64, m Message, info string) error {
	body := bytes.ReplaceAll(m.Body, []byte("\r\n"), []byte("\n"))
	virtualSize := len(body) + bytes.Count(body, []byte("\n"))
	// Dovecot gives new files UIDs in the order of their names, which
	// start with seconds and microseconds; seq keeps them in order.
	// S= and W= spare it from reading files to learn their sizes.
	name := fmt.Sprintf("%d.M%06dP%dQ%d.imapproxy-test,S=%d,W=%d",
		base+seq/1e6, seq%1e6, os.Getpid(), seq, len(body), virtualSize)
	tmp := filepath.Join(dir, "tmp", name)
	if err := writeFile(tmp, body, os.Geteuid() == 0, s.MailUID, s.MailGID); err != nil {
		return err
	}
	if !m.Date.IsZero() {
		if err := os.Chtimes(tmp, m.Date, m.Date); err != nil {
			return err
		}
	}
	return os.Rename(tmp, filepath.Join(dir, "cur", name+":2,"+info))
}

func writeFile(path string, data []byte, chown bool, uid, gid int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && chown {
		err = f.Chown(uid, gid)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// infoFlags turns system flags into the sorted letters of a maildir name.
func infoFlags(flags []string) (string, error) {
	var letters []byte
	for _, f := range flags {
		l, ok := maildirFlags[strings.ToLower(f)]
		if !ok {
			return "", fmt.Errorf("flag %q: only system flags can be delivered", f)
		}
		if bytes.IndexByte(letters, l) < 0 {
			letters = append(letters, l)
		}
	}
	sort.Slice(letters, func(i, j int) bool { return letters[i] < letters[j] })
	return string(letters), nil
}

// maildir returns the maildir of a user's mailbox, asking doveadm where it
// is (so the layout stays Dovecot's business) and creating it on first use.
func (s *Server) maildir(user, mailbox string) (string, error) {
	key := [2]string{user, mailbox}
	s.deliverMu.Lock()
	dir, ok := s.mailboxDir[key]
	s.deliverMu.Unlock()
	if ok {
		return dir, nil
	}
	if _, ok := s.Users[user]; !ok {
		return "", fmt.Errorf("deliver: no user %q", user)
	}
	out, err := s.Doveadm("mailbox", "path", "-u", user, mailbox)
	if err != nil {
		return "", err
	}
	dir = strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("doveadm mailbox path %q for %s: empty answer", mailbox, user)
	}
	if _, err := os.Stat(filepath.Join(dir, "cur")); err != nil {
		// INBOX always exists for Dovecot and is made on first access;
		// other mailboxes are created. A concurrent creation is fine.
		if strings.EqualFold(mailbox, "INBOX") {
			_, err = s.Doveadm("mailbox", "status", "-u", user, "messages", "INBOX")
		} else {
			_, err = s.Doveadm("mailbox", "create", "-u", user, mailbox)
			if err != nil && strings.Contains(err.Error(), "already exists") {
				err = nil
			}
		}
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(filepath.Join(dir, "cur")); err != nil {
			return "", fmt.Errorf("mailbox %q of %s: %w", mailbox, user, err)
		}
	}
	s.deliverMu.Lock()
	s.mailboxDir[key] = dir
	s.deliverMu.Unlock()
	return dir, nil
}
