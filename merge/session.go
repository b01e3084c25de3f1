package merge

// This file holds the merged-account IMAP session: go-imap's
// imapserver.Session over a user's hub. One Session serves one client
// connection; imapserver calls its methods one at a time, so a Session
// needs no lock of its own. The hub's updates reach the session through
// its Subscriber and are written by Poll and Idle.

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// Session is one client connection of a merged user.
type Session struct {
	m    *Manager
	hub  *Hub
	sub  *Subscriber
	spec UserSpec
	log  *slog.Logger

	ctx    context.Context // ends with Close; upstream commands run under it
	cancel context.CancelFunc

	sel *selection // nil when no mailbox is selected

	// broken, when set, ends the client connection: a response was cut
	// short (an upstream failed mid-literal) and cannot be finished.
	broken func()
	// alert, when set, sends the client an untagged OK [ALERT]; alerted
	// are the accounts it was sent for (once per session each).
	alert   func(text string)
	alerted map[string]bool
}

// OnBroken sets what ends the client connection when a response cannot be
// finished (the upstream failed in the middle of a literal). Without it the
// session can only answer NO, which a client reading the literal would
// wait for in vain.
func (s *Session) OnBroken(f func()) { s.broken = f }

// OnAlert sets how the session tells the client about an unreachable
// account: an untagged "OK [ALERT] text", which imapserver has no writer
// for. The session calls f only at the start of a command's handling,
// before it writes any of the command's responses.
func (s *Session) OnAlert(f func(text string)) { s.alert = f }

// alertOnce sends text as an alert, once per session for account.
func (s *Session) alertOnce(account, text string) {
	if s.alert == nil || s.alerted[account] {
		return
	}
	if s.alerted == nil {
		s.alerted = make(map[string]bool)
	}
	s.alerted[account] = true
	s.alert(text)
}

// selection is the session's selected virtual mailbox.
type selection struct {
	name        string // the store's name of the virtual mailbox
	readOnly    bool   // EXAMINE: no change of the mailbox through this session
	uidValidity uint32
	vmID        int64 // the store's ID of the virtual mailbox
	snap        *Snapshot
	// kept are the keywords the proxy keeps for messages whose upstream
	// cannot (see session_keywords.go).
	kept map[VUID][]imap.Flag
	// view is the hub's view at SELECT, by VUID: shared with the hub and
	// the user's other sessions, never changed. extra are the messages
	// added since, and flags the flags that changed since (updates,
	// STORE and FETCH results), so that an idle session holds nothing per
	// message.
	view  []ViewMessage
	extra map[VUID]ViewMessage
	flags map[VUID][]imap.Flag
	// validity is each source's UIDVALIDITY as the session's UIDs were
	// mapped; an upstream that now reports another one was recreated, and
	// its UIDs name other messages.
	validity map[srcKey]uint32
	// searchRes is the last SEARCH ... SAVE result ("$").
	searchRes []VUID
	// removed are vuids the hub reported gone that could not be
	// announced yet (no EXPUNGE allowed during FETCH, STORE, SEARCH).
	removed []VUID
	// existsDue and flagsDue are what absorb took in that the client
	// has not been told yet (EXISTS, FETCH FLAGS).
	existsDue bool
	flagsDue  []VUID
}

// msg returns where v lives and its flags as of the view (see
// upstreamFlags for the session's).
func (sel *selection) msg(v VUID) (ViewMessage, bool) {
	if m, ok := sel.extra[v]; ok {
		return m, true
	}
	i, ok := slices.BinarySearchFunc(sel.view, v, func(m ViewMessage, v VUID) int { return cmpVUID(m.VUID, v) })
	if !ok {
		return ViewMessage{}, false
	}
	return sel.view[i], true
}

// upstreamFlags returns v's upstream flags as the session last learned
// them.
func (sel *selection) upstreamFlags(v VUID) []imap.Flag {
	if f, ok := sel.flags[v]; ok {
		return f
	}
	m, _ := sel.msg(v)
	return m.Flags
}

// setFlags records v's upstream flags.
func (sel *selection) setFlags(v VUID, flags []imap.Flag) {
	if sel.flags == nil {
		sel.flags = make(map[VUID][]imap.Flag)
	}
	sel.flags[v] = slices.Clone(flags)
}

var (
	_ imapserver.Session          = (*Session)(nil)
	_ imapserver.SessionNamespace = (*Session)(nil)
	_ imapserver.SessionMove      = (*Session)(nil)
	_ imapserver.SessionIMAP4rev2 = (*Session)(nil)
)

// NewSession attaches a client session to the user's hub; Close detaches
// it.
func (m *Manager) NewSession(ctx context.Context, spec UserSpec) (imapserver.Session, error) {
	h, sub, err := m.Attach(ctx, spec)
	if err != nil {
		return nil, err
	}
	s := &Session{m: m, hub: h, sub: sub, spec: spec, log: h.log}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Close ends the session: its selection and its use of the hub.
func (s *Session) Close() error {
	s.cancel()
	s.hub.Detach(s.sub)
	s.sel = nil
	return nil
}

// Login is refused: a merged session starts authenticated.
func (s *Session) Login(username, password string) error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "Already authenticated"}
}

// Namespace reports one personal namespace, "" with "/" as delimiter.
func (s *Session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: '/'}}}, nil
}

// Select selects (or, with options.ReadOnly, examines) a virtual mailbox:
// the hub syncs its sources and the session keeps the snapshot.
func (s *Session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	readOnly := options != nil && options.ReadOnly
	s.sel = nil
	view, err := s.hub.Select(s.ctx, s.sub, name)
	if err != nil {
		return nil, s.clientErr("select", name, err)
	}
	sel := &selection{
		name:        view.VMailbox.Name,
		readOnly:    readOnly,
		uidValidity: view.VMailbox.UIDValidity,
		vmID:        view.VMailbox.ID,
		view:        view.Messages,
		validity:    make(map[srcKey]uint32),
	}
	var firstUnseen uint32
	for i, vm := range view.Messages {
		sel.validity[srcKey{vm.Account, vm.Mailbox}] = vm.UIDValidity
		if firstUnseen == 0 && !hasFlag(vm.Flags, imap.FlagSeen) {
			firstUnseen = uint32(i + 1)
		}
	}
	for _, a := range view.Missing {
		s.alertOnce(a, "The server of account "+a+" cannot be reached now; "+name+" shows the other accounts' messages until it is back")
	}
	sel.snap = SharedSnapshot(view.Messages)
	if err := sel.loadKept(s.ctx, s); err != nil {
		s.hub.Unselect(s.sub)
		return nil, s.clientErr("select", name, err)
	}
	s.sel = sel
	flags, perm := sel.withKeptFlags(view.Flags, view.PermanentFlags)
	data := &imap.SelectData{
		Flags:             flags,
		NumMessages:       uint32(sel.snap.Len()),
		FirstUnseenSeqNum: firstUnseen,
		UIDNext:           imap.UID(view.VMailbox.UIDNext),
		UIDValidity:       view.VMailbox.UIDValidity,
	}
	if !readOnly {
		data.PermanentFlags = perm
	}
	return data, nil
}

// Unselect ends the selection.
func (s *Session) Unselect() error {
	s.hub.Unselect(s.sub)
	s.sel = nil
	return nil
}

// Poll writes the updates the hub queued: EXPUNGE (only when
// allowExpunge; else they wait), EXISTS and FETCH FLAGS.
func (s *Session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if err := s.sub.Err(); err != nil {
		return s.clientErr("poll", "", err)
	}
	return s.flush(w, allowExpunge)
}

// Idle writes updates as they come until stop is closed.
func (s *Session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	for {
		if err := s.Poll(w, true); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-s.sub.Updates():
		}
	}
}

// flush takes the hub's updates and writes them.
func (s *Session) flush(w *imapserver.UpdateWriter, allowExpunge bool) error {
	s.absorb()
	sel := s.sel
	if sel == nil {
		return nil
	}
	if allowExpunge {
		if err := s.writeExpunges(w.WriteExpunge); err != nil {
			return err
		}
	}
	if sel.existsDue {
		sel.existsDue = false
		if err := w.WriteNumMessages(uint32(sel.snap.Len())); err != nil {
			return err
		}
	}
	flags := sortUnique(sel.flagsDue)
	sel.flagsDue = nil
	for _, v := range flags {
		seq, ok := sel.snap.Seq(v)
		if !ok {
			continue
		}
		if err := w.WriteMessageFlags(seq, imap.UID(v), sel.flagsOf(v)); err != nil {
			return err
		}
	}
	return nil
}

// absorb applies the hub's pending updates to the selection: removals
// are kept for writeExpunges, additions go into the snapshot, flags into
// the messages, and what the client must be told is noted for flush.
func (s *Session) absorb() {
	us := s.sub.Take()
	sel := s.sel
	if sel == nil {
		return
	}
	for _, u := range us {
		if u.Mailbox != sel.name {
			continue
		}
		sel.removed = append(sel.removed, u.Removed...)
		var vs []VUID
		for _, vm := range u.Added {
			if _, ok := sel.snap.Seq(vm.VUID); ok {
				continue
			}
			if sel.extra == nil {
				sel.extra = make(map[VUID]ViewMessage)
			}
			sel.extra[vm.VUID] = vm
			sel.validity[srcKey{vm.Account, vm.Mailbox}] = vm.UIDValidity
			vs = append(vs, vm.VUID)
		}
		if len(vs) > 0 {
			if _, err := sel.snap.Add(vs); err != nil {
				s.log.Error("session: updates out of order", "mailbox", sel.name, "err", err)
				continue
			}
			sel.existsDue = true
		}
		for _, vm := range u.Flags {
			if _, ok := sel.msg(vm.VUID); !ok || sameFlags(sel.upstreamFlags(vm.VUID), vm.Flags) {
				continue
			}
			sel.setFlags(vm.VUID, vm.Flags)
			sel.flagsDue = append(sel.flagsDue, vm.VUID)
		}
	}
}

// writeExpunges announces the pending removals with write (EXPUNGE).
func (s *Session) writeExpunges(write func(uint32) error) error {
	sel := s.sel
	if sel == nil || len(sel.removed) == 0 {
		return nil
	}
	removed := sel.removed
	sel.removed = nil
	for _, seq := range sel.snap.Expunge(removed) {
		if err := write(seq); err != nil {
			return err
		}
	}
	for _, v := range removed {
		delete(sel.extra, v)
		delete(sel.flags, v)
	}
	return nil
}

// selected returns the selection, or an error if there is none.
func (s *Session) selected() (*selection, error) {
	if s.sel == nil {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "No mailbox selected"}
	}
	return s.sel, nil
}

// writable fails for an EXAMINEd mailbox.
func (sel *selection) writable() error {
	if sel.readOnly {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: "READ-ONLY", Text: "Mailbox is read-only (EXAMINE)"}
	}
	return nil
}

// resolve returns the vuids numSet names.
func (sel *selection) resolve(numSet imap.NumSet) ([]VUID, error) {
	vs, err := sel.snap.Resolve(numSet, sel.searchRes)
	if errors.Is(err, ErrBadSeq) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Message sequence number out of range"}
	}
	return vs, err
}

// hasFlag reports whether fs has f (flags are case-insensitive).
func hasFlag(fs []imap.Flag, f imap.Flag) bool {
	return slices.ContainsFunc(fs, func(g imap.Flag) bool { return strings.EqualFold(string(f), string(g)) })
}
