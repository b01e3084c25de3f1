package merge

// This file holds the session's mailbox-level commands: LIST, STATUS,
// CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE and APPEND.

import (
	"context"
	"io"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"

	"imapproxy/router"
	"imapproxy/upstream"
)

// delim is the proxy's hierarchy delimiter.
const delim = '/'

// List lists the virtual folders matching ref and patterns. Every folder
// gets \HasChildren or \HasNoChildren from the virtual tree. An account
// folder is subscribed as its upstream says (LIST-EXTENDED's RETURN
// (SUBSCRIBED)); one whose upstream cannot say, the unified folders and
// the containers count as subscribed. LSUB and LIST (SUBSCRIBED) list
// the subscribed ones, with \Subscribed.
// RETURN (STATUS ...) (LIST-STATUS) adds each selectable folder's
// STATUS; a folder whose STATUS fails gets none (RFC 5819).
func (s *Session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 || len(patterns) == 1 && patterns[0] == "" {
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	if options == nil {
		options = &imap.ListOptions{}
	}
	folders, down, err := s.hub.List(s.ctx)
	if err != nil {
		return s.clientErr("list", "", err)
	}
	for _, a := range down {
		s.alertOnce(a, "The server of account "+a+" cannot be reached now; its folders cannot be opened until it is back")
	}
	subscribed := options.SelectSubscribed || options.ReturnSubscribed
	for i, f := range folders {
		if options.SelectSubscribed && !f.Subscribed {
			continue
		}
		match := false
		for _, p := range patterns {
			if imapserver.MatchList(f.Name, delim, ref, p) {
				match = true
				break
			}
		}
		if !match {
			continue
		}
		attrs := append([]imap.MailboxAttr(nil), f.Attrs...)
		if !hasMailboxAttr(attrs, imap.MailboxAttrHasChildren) && !hasMailboxAttr(attrs, imap.MailboxAttrHasNoChildren) {
			if hasChild(folders, i) {
				attrs = append(attrs, imap.MailboxAttrHasChildren)
			} else {
				attrs = append(attrs, imap.MailboxAttrHasNoChildren)
			}
		}
		if subscribed && f.Subscribed && !hasMailboxAttr(attrs, imap.MailboxAttrSubscribed) {
			attrs = append(attrs, imap.MailboxAttrSubscribed)
		}
		data := &imap.ListData{Attrs: attrs, Delim: delim, Mailbox: f.Name}
		if options.ReturnStatus != nil && !hasMailboxAttr(attrs, imap.MailboxAttrNoSelect) && !hasMailboxAttr(attrs, imap.MailboxAttrNonExistent) {
			st, err := s.Status(f.Name, options.ReturnStatus)
			if err == nil {
				data.Status = st
			} else if s.ctx.Err() != nil {
				return err
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// hasChild reports whether folders (sorted by name) has a folder below
// folders[i].
func hasChild(folders []Folder, i int) bool {
	prefix := folders[i].Name + string(delim)
	for _, f := range folders[i+1:] {
		if strings.HasPrefix(f.Name, prefix) {
			return true
		}
	}
	for _, f := range folders[:i] { // names sort by bytes; "/" may sort after some
		if strings.HasPrefix(f.Name, prefix) {
			return true
		}
	}
	return false
}

// hasMailboxAttr reports whether attrs has a (attributes are case-insensitive).
func hasMailboxAttr(attrs []imap.MailboxAttr, a imap.MailboxAttr) bool {
	for _, b := range attrs {
		if strings.EqualFold(string(a), string(b)) {
			return true
		}
	}
	return false
}

// Status syncs the sources of a virtual mailbox (without selecting it
// for the session) and reports its counts; a source the hub holds current
// (see Hub.currentCounts) is counted from its state without a sync,
// unless SIZE or APPENDLIMIT need its upstream. SIZE (STATUS=SIZE) is the sum
// of the messages' RFC822.SIZE, one UID FETCH 1:* (RFC822.SIZE) per
// source; DELETED counts the \Deleted messages; APPENDLIMIT is the
// smallest of the sources' upstreams' (NIL when none has one).
// HIGHESTMODSEQ is not offered.
func (s *Session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	tree, accounts, err := s.hub.tree(s.ctx)
	if err != nil {
		return nil, s.clientErr("status", name, err)
	}
	storeName, t, err := s.hub.resolve(s.ctx, tree, accounts, name)
	if err != nil {
		return nil, s.clientErr("status", name, err)
	}
	vm, err := s.hub.st.VMailbox(s.ctx, s.spec.User, storeName)
	if err != nil {
		return nil, s.clientErr("status", name, err)
	}
	var n sourceCounts
	var size int64
	var appendLimit *uint32
	synced := 0
	var lastErr error
	cs := s.conns()
	defer cs.release()
	for _, src := range t.Sources {
		if !options.Size && !options.AppendLimit {
			if c, ok := s.hub.currentCounts(s.ctx, storeName, vm.ID, srcKey(src)); ok {
				synced++
				n.messages, n.unseen, n.deleted = n.messages+c.messages, n.unseen+c.unseen, n.deleted+c.deleted
				continue
			}
		}
		c, _, err := cs.get(src.Account, src.Mailbox, true)
		if err == nil {
			if options.AppendLimit {
				appendLimit = statusAppendLimit(appendLimit, c.Caps())
			}
			var res SyncResult
			res, err = SyncSource(s.ctx, s.hub.st, vm, src.Account, c, src.Mailbox)
			if err == nil {
				synced++
				for _, m := range res.Messages {
					n.add(m.Flags)
				}
				if options.Size && len(res.Messages) > 0 {
					var sz int64
					sz, err = sourceSize(s.ctx, c)
					size += sz
				}
			}
			cs.held[src.Account].selected = false // SyncSource selected it
		}
		if err != nil {
			lastErr = err
			s.log.Warn("status: source left out", "mailbox", storeName, "account", src.Account, "err", err)
		}
	}
	if synced == 0 && lastErr != nil {
		return nil, s.clientErr("status", name, lastErr)
	}
	vm, err = s.hub.st.VMailbox(s.ctx, s.spec.User, storeName)
	if err != nil {
		return nil, s.clientErr("status", name, err)
	}
	data := &imap.StatusData{Mailbox: name}
	if options.NumMessages {
		data.NumMessages = &n.messages
	}
	if options.UIDNext {
		data.UIDNext = imap.UID(vm.UIDNext)
	}
	if options.UIDValidity {
		data.UIDValidity = vm.UIDValidity
	}
	if options.NumUnseen {
		data.NumUnseen = &n.unseen
	}
	if options.NumRecent {
		var zero uint32
		data.NumRecent = &zero
	}
	if options.NumDeleted {
		data.NumDeleted = &n.deleted
	}
	if options.Size {
		data.Size = &size
	}
	data.AppendLimit = appendLimit
	return data, nil
}

// sourceSize sums the RFC822.SIZE of every message of the mailbox c has
// selected (one UID FETCH 1:* (RFC822.SIZE)).
func sourceSize(ctx context.Context, c *upstream.Client) (int64, error) {
	var size int64
	err := c.Do(ctx, func(ic *imapclient.Client) error {
		all := imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}
		bufs, err := ic.Fetch(all, &imap.FetchOptions{UID: true, RFC822Size: true}).Collect()
		for _, b := range bufs {
			size += b.RFC822Size
		}
		return err
	})
	return size, err
}

// onAccount runs fn on a pooled client of account.
func (s *Session) onAccount(account string, fn func(*imapclient.Client) error) error {
	pool := s.hub.pools[account]
	c, err := pool.Get(s.ctx)
	if err != nil {
		return err
	}
	defer pool.Put(c)
	return c.Do(s.ctx, fn)
}

// Create creates a folder on the account the tree places it in.
func (s *Session) Create(name string, options *imap.CreateOptions) error {
	tree, err := s.hub.Tree(s.ctx)
	if err != nil {
		return s.clientErr("create", name, err)
	}
	src, err := tree.Create(strings.TrimSuffix(name, string(delim)))
	if err != nil {
		return s.clientErr("create", name, err)
	}
	err = s.onAccount(src.Account, func(ic *imapclient.Client) error {
		return ic.Create(src.Mailbox, nil).Wait()
	})
	return s.clientErr("create", name, err)
}

// Delete deletes an account's folder upstream and its virtual mailbox.
func (s *Session) Delete(name string) error {
	tree, err := s.hub.Tree(s.ctx)
	if err != nil {
		return s.clientErr("delete", name, err)
	}
	t, err := tree.Resolve(name)
	if err != nil {
		return s.clientErr("delete", name, err)
	}
	if t.NoSelect || t.Unified || len(t.Sources) != 1 || isInboxName(t.Sources[0].Mailbox) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "This folder cannot be deleted"}
	}
	src := t.Sources[0]
	err = s.onAccount(src.Account, func(ic *imapclient.Client) error {
		return ic.Delete(src.Mailbox).Wait()
	})
	if err != nil {
		return s.clientErr("delete", name, err)
	}
	storeName := name
	if n, ok := tree.VirtualName(src.Account, src.Mailbox); ok {
		storeName = n
	}
	if err := s.hub.st.DeleteVMailbox(s.ctx, s.spec.User, storeName); err != nil {
		s.log.Warn("delete: virtual mailbox kept", "mailbox", storeName, "err", err)
	}
	return nil
}

// Rename renames a folder within one account, upstream and in the store
// (with the virtual mailboxes below it). Renames across accounts are NO
// [CANNOT].
func (s *Session) Rename(mailbox, newName string, options *imap.RenameOptions) error {
	tree, err := s.hub.Tree(s.ctx)
	if err != nil {
		return s.clientErr("rename", mailbox, err)
	}
	from, to, err := tree.Rename(mailbox, strings.TrimSuffix(newName, string(delim)))
	if err != nil {
		return s.clientErr("rename", mailbox, err)
	}
	err = s.onAccount(from.Account, func(ic *imapclient.Client) error {
		return ic.Rename(from.Mailbox, to.Mailbox, nil).Wait()
	})
	if err != nil {
		return s.clientErr("rename", mailbox, err)
	}
	if isInboxName(from.Mailbox) {
		return nil // RENAME INBOX moves its messages; INBOX stays
	}
	s.renameStore(tree, from, to)
	return nil
}

// renameStore renames the virtual mailboxes of a renamed folder and of
// the folders below it.
func (s *Session) renameStore(tree *router.Tree, from, to router.Source) {
	oldName, ok1 := tree.VirtualName(from.Account, from.Mailbox)
	newName, ok2 := tree.VirtualName(to.Account, to.Mailbox)
	if !ok1 || !ok2 {
		return
	}
	vms, err := s.hub.st.ListVMailboxes(s.ctx, s.spec.User)
	if err != nil {
		s.log.Warn("rename: virtual mailboxes not renamed", "mailbox", oldName, "err", err)
		return
	}
	for _, vm := range vms {
		var n string
		switch {
		case vm.Name == oldName:
			n = newName
		case strings.HasPrefix(vm.Name, oldName+string(delim)):
			n = newName + vm.Name[len(oldName):]
		default:
			continue
		}
		if err := s.hub.st.RenameVMailbox(s.ctx, s.spec.User, vm.Name, n); err != nil {
			s.log.Warn("rename: virtual mailbox not renamed", "mailbox", vm.Name, "err", err)
		}
	}
}

// Subscribe subscribes an account's folder upstream; unified folders and
// containers need nothing.
func (s *Session) Subscribe(name string) error { return s.subscribe(name, true) }

// Unsubscribe unsubscribes an account's folder upstream.
func (s *Session) Unsubscribe(name string) error { return s.subscribe(name, false) }

func (s *Session) subscribe(name string, on bool) error {
	tree, err := s.hub.Tree(s.ctx)
	if err != nil {
		return s.clientErr("subscribe", name, err)
	}
	t, err := tree.Resolve(name)
	if err != nil {
		return s.clientErr("subscribe", name, err)
	}
	if t.Unified || t.NoSelect || len(t.Sources) != 1 {
		return nil
	}
	src := t.Sources[0]
	err = s.onAccount(src.Account, func(ic *imapclient.Client) error {
		if on {
			return ic.Subscribe(src.Mailbox).Wait()
		}
		return ic.Unsubscribe(src.Mailbox).Wait()
	})
	return s.clientErr("subscribe", name, err)
}

// Append appends a message to an account's folder, or for a unified
// folder to the folder of the account the append rules choose by the
// message's header (else the default account's), streaming r upstream.
// A message over the target upstream's APPENDLIMIT is NO [TOOBIG]. The
// APPENDUID is in virtual UIDs when the upstream gave one.
func (s *Session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	t, body, err := s.appendTarget(name, r)
	if err != nil {
		return nil, s.clientErr("append", name, err)
	}
	var opts imap.AppendOptions
	if options != nil {
		opts.Time = options.Time
		for _, f := range options.Flags {
			if !strings.EqualFold(string(f), `\Recent`) {
				opts.Flags = append(opts.Flags, f)
			}
		}
	}
	pool := s.hub.pools[t.src.Account]
	c, err := pool.Get(s.ctx)
	if err != nil {
		return nil, s.clientErr("append", name, err)
	}
	defer pool.Put(c)
	if err := checkAppendSize(c.Caps(), r.Size()); err != nil {
		return nil, err
	}
	var data *imap.AppendData
	err = c.Do(s.ctx, func(ic *imapclient.Client) error {
		cmd := ic.Append(t.src.Mailbox, r.Size(), &opts)
		if _, err := io.Copy(cmd, body); err != nil {
			cmd.Close()
			return err
		}
		if err := cmd.Close(); err != nil {
			return err
		}
		var err error
		data, err = cmd.Wait()
		return err
	})
	if err != nil {
		return nil, s.clientErr("append", name, err)
	}
	s.log.Debug("append", "mailbox", t.storeName, "account", t.src.Account)
	s.hub.noteChange(srcKey(t.src)) // as after a COPY (session_store.go)
	if data == nil || data.UID == 0 || data.UIDValidity == 0 {
		return nil, nil
	}
	vm, vuids, err := s.mapNew(t, data.UIDValidity, []uint32{uint32(data.UID)})
	if err != nil || len(vuids) != 1 {
		s.log.Warn("append: no virtual UID", "mailbox", t.storeName, "err", err)
		return nil, nil
	}
	return &imap.AppendData{UID: imap.UID(vuids[0]), UIDValidity: vm.UIDValidity}, nil
}
