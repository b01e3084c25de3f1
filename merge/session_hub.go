package merge

// This file holds what the session needs from the hub beyond its API:
// pooled upstream clients with a source mailbox selected, re-syncs of
// the selected mailbox's sources after a change made through the
// session, and the mapping of errors to IMAP answers.

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/emersion/go-imap/v2"

	"imapproxy/router"
	"imapproxy/store"
	"imapproxy/upstream"
)

// conns hands out one pooled client per account for one command, with
// the mailbox the command needs selected, and puts them back at the end.
type conns struct {
	s    *Session
	held map[string]*heldConn
}

// heldConn is a pooled client and what it has selected.
type heldConn struct {
	c        *upstream.Client
	mailbox  string
	readOnly bool
	selected bool
	data     *imap.SelectData
}

func (s *Session) conns() *conns { return &conns{s: s, held: make(map[string]*heldConn)} }

// get returns account's client with mailbox selected (read-write unless
// readOnly; a read-write selection serves a read-only use too).
func (cs *conns) get(account, mailbox string, readOnly bool) (*upstream.Client, *imap.SelectData, error) {
	hc := cs.held[account]
	if hc == nil {
		pool := cs.s.hub.pools[account]
		if pool == nil {
			return nil, nil, fmt.Errorf("merge: unknown account %q", account)
		}
		c, err := pool.Get(cs.s.ctx)
		if err != nil {
			return nil, nil, err
		}
		hc = &heldConn{c: c}
		cs.held[account] = hc
	}
	if hc.selected && hc.mailbox == mailbox && (readOnly || !hc.readOnly) {
		return hc.c, hc.data, nil
	}
	hc.selected = false
	data, err := hc.c.Select(cs.s.ctx, mailbox, readOnly)
	if err != nil {
		// A connection whose SELECT failed may be stuck on a mailbox that
		// was deleted under it (Dovecot answers "Mailbox was deleted under
		// us" from then on): the pool gets a fresh one instead.
		hc.c.Close()
		cs.s.hub.pools[account].Put(hc.c)
		delete(cs.held, account)
		return nil, nil, err
	}
	if sel := cs.s.sel; sel != nil {
		if want, ok := sel.validity[srcKey{account, mailbox}]; ok && want != 0 && data.UIDValidity != want {
			// The upstream mailbox was recreated: the session's UIDs for it
			// name other messages now. Nothing is done with them until the
			// hub has re-synced and the session has the new ones.
			cs.s.hub.noteChange(srcKey{account, mailbox})
			return nil, nil, errSourceChanged
		}
	}
	hc.mailbox, hc.readOnly, hc.selected, hc.data = mailbox, readOnly, true, data
	return hc.c, data, nil
}

// errSourceChanged answers a command on messages of an upstream mailbox
// that was recreated since the session mapped them.
var errSourceChanged = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
	Text: "A folder changed on its server; its messages reappear with new UIDs, try again"}

// release puts every client back.
func (cs *conns) release() {
	for account, hc := range cs.held {
		cs.s.hub.pools[account].Put(hc.c)
	}
	cs.held = nil
}

// sourceGroup is the messages of one source among a command's.
type sourceGroup struct {
	key   srcKey
	vuids []VUID
	uids  []imap.UID
}

// uidSet returns the group's upstream UIDs as a set.
func (g *sourceGroup) uidSet() imap.UIDSet { return imap.UIDSetNum(g.uids...) }

// groupBySource groups vuids (ascending) by source, in order of first
// appearance; vuids the selection does not know are left out.
func (sel *selection) groupBySource(vuids []VUID) []*sourceGroup {
	var out []*sourceGroup
	idx := make(map[srcKey]int)
	for _, v := range vuids {
		m, ok := sel.msg(v)
		if !ok {
			continue
		}
		key := srcKey{Account: m.Account, Mailbox: m.Mailbox}
		i, ok := idx[key]
		if !ok {
			i = len(out)
			idx[key] = i
			out = append(out, &sourceGroup{key: key})
		}
		out[i].vuids = append(out[i].vuids, v)
		out[i].uids = append(out[i].uids, m.UID)
	}
	return out
}

// resyncEvent asks the hub to sync sources of sub's selected mailbox
// now; the reply has one channel per source that is told the outcome.
type resyncEvent struct {
	sub     *Subscriber
	sources []srcKey
	reply   chan []chan error
}

func (ev resyncEvent) apply(s *hubState) {
	vs := s.mailboxes[ev.sub.mailbox]
	var waits []chan error
	for _, key := range ev.sources {
		if vs == nil || vs.src[key] == nil {
			continue
		}
		ch := make(chan error, 1)
		s.requestSync(vs, key, ch)
		waits = append(waits, ch)
	}
	ev.reply <- waits
}

// resync syncs sources of the session's selected mailbox and waits for
// the syncs, so that their changes are among sub's updates afterwards.
// Failures are logged: the hub retries them.
func (s *Session) resync(sources []srcKey) {
	reply := make(chan []chan error, 1)
	waits, err := call(s.ctx, s.hub, resyncEvent{sub: s.sub, sources: sources, reply: reply}, reply)
	if err != nil {
		return
	}
	for _, w := range waits {
		select {
		case err := <-w:
			if err != nil {
				s.log.Warn("session: re-sync failed", "err", err)
			}
		case <-s.ctx.Done():
			return
		}
	}
}

// target is where a command that writes into a virtual mailbox goes.
type target struct {
	storeName string // the virtual mailbox's name in the store
	src       router.Source
	// sources are all of the folder's sources (a unified folder has one
	// per account that has it).
	sources []router.Source
}

// forAccount returns the target for messages of account: a unified
// folder's source in that account where it has one (a message moved to
// the unified Trash stays in its own account's Trash), else t.
func (t target) forAccount(account string) target {
	if i := slices.IndexFunc(t.sources, func(x router.Source) bool { return x.Account == account }); i >= 0 {
		t.src = t.sources[i]
	}
	return t
}

// writeTarget resolves the mailbox an APPEND, COPY or MOVE writes into:
// an account's folder is its one source; a unified folder's is the
// default account's source (else the first).
func (s *Session) writeTarget(name string) (target, error) {
	tree, accounts, err := s.hub.tree(s.ctx)
	if err != nil {
		return target{}, err
	}
	storeName, t, err := s.hub.resolve(s.ctx, tree, accounts, name)
	if err != nil {
		return target{}, err
	}
	if len(t.Sources) == 0 {
		return target{}, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No account has such a folder"}
	}
	src := t.Sources[0]
	if i := slices.IndexFunc(t.Sources, func(x router.Source) bool { return x.Account == s.spec.DefaultAccount }); i >= 0 {
		src = t.Sources[i]
	}
	return target{storeName: storeName, src: src, sources: t.Sources}, nil
}

// mapNew gives upstream UIDs of a write target (from APPENDUID or
// COPYUID) their vuids in the target's virtual mailbox.
func (s *Session) mapNew(t target, uidValidity uint32, uids []uint32) (store.VMailbox, []uint32, error) {
	vm, err := s.hub.st.VMailbox(s.ctx, s.spec.User, t.storeName)
	if err != nil {
		return vm, nil, err
	}
	src := store.Source{Account: t.src.Account, Mailbox: t.src.Mailbox, UIDValidity: uidValidity}
	vuids, err := s.hub.st.MapUIDs(s.ctx, vm.ID, src, uids)
	return vm, vuids, err
}

// clientErr maps err to the client's answer: IMAP errors pass, tree
// errors get their response codes, unreachable upstreams UNAVAILABLE,
// and anything else is logged and answered SERVERBUG.
func (s *Session) clientErr(op, mailbox string, err error) error {
	if err == nil {
		return nil
	}
	if ie, ok := errors.AsType[*imap.Error](err); ok {
		if ie.Type == imap.StatusResponseTypeBad { // the upstream's, not the client's fault
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: ie.Code, Text: ie.Text}
		}
		return ie
	}
	no := func(code imap.ResponseCode, text string) error {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
	}
	if te, ok := errors.AsType[*router.TreeError](err); ok {
		switch {
		case errors.Is(te, router.ErrNoSuchMailbox):
			return no(imap.ResponseCodeNonExistent, te.Text)
		case errors.Is(te, router.ErrAlreadyExists):
			return no(imap.ResponseCodeAlreadyExists, te.Text)
		default:
			return no(imap.ResponseCodeCannot, te.Text)
		}
	}
	switch {
	case errors.Is(err, ErrNotSelectable):
		return no(imap.ResponseCodeCannot, "This folder cannot be selected")
	case errors.Is(err, ErrHubClosed):
		return no(imap.ResponseCodeUnavailable, "The server is shutting down")
	case errors.Is(err, ErrUnavailable), errors.Is(err, upstream.ErrUnavailable):
		s.log.Warn("session: upstream unavailable", "op", op, "mailbox", mailbox, "err", err)
		return no(imap.ResponseCodeUnavailable, "The account holding this folder cannot be reached now; try again later")
	case errors.Is(err, context.Canceled):
		return no(imap.ResponseCodeUnavailable, "Session ending")
	}
	s.log.Error("session: command failed", "op", op, "mailbox", mailbox, "err", err)
	return no(imap.ResponseCodeServerBug, "Internal error; it has been logged")
}
