package merge

// This file is the hub's goroutine: it alone owns the user's shared state
// (sessions, the tree's accounts, per virtual mailbox the sessions that
// have it selected and the last sync state per source, the watchers) and
// changes it as typed events arrive. It never does I/O itself: syncs run
// in worker goroutines it starts (one per source at a time) and report
// back with an event.

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"

	"imapproxy/router"
	"imapproxy/store"
)

// Retry bounds of a source whose sync failed.
const (
	minSyncRetry = time.Second
	maxSyncRetry = 30 * time.Second
)

// errUnselected is what a Select waiting for a sync gets when its
// selection was dropped meanwhile.
var errUnselected = errors.New("merge: selection ended")

// hubEvent is an event for the hub goroutine; apply runs there.
type hubEvent interface{ apply(s *hubState) }

// srcKey names a source: an account's upstream mailbox.
type srcKey struct{ Account, Mailbox string }

// hubState is the state the hub goroutine owns.
type hubState struct {
	h         *Hub
	subs      map[*Subscriber]struct{}
	known     map[string]router.TreeAccount // accounts whose namespace is known
	tree      treeState
	mailboxes map[string]*vmState // selected virtual mailboxes, by name
	watchers  map[srcKey]*watchEntry
	linger    *time.Timer
	// lingering are the selected mailboxes no session has selected any
	// more, oldest first: their state is kept (unwatched), so that
	// selecting one again needs only a quick sync (SyncSourceSince).
	lingering []*vmState
}

// maxLingering bounds the mailboxes whose state outlives their last
// session.
const maxLingering = 8

// maxLingeringWatched bounds the lingering mailboxes whose watchers run.
const maxLingeringWatched = 2

// treeState is the tree as last built.
type treeState struct {
	tree     *router.Tree
	accounts []string      // the accounts whose namespace is known
	missing  []AccountSpec // the others, mounted with a guessed namespace
	err      error         // NewTree's
}

// watchEntry is a running watcher and the number of selected virtual
// mailboxes that have its source.
type watchEntry struct {
	w    *Watch
	refs int
}

// vmState is a selected virtual mailbox.
type vmState struct {
	name    string
	vm      store.VMailbox
	sources []router.Source
	subs    map[*Subscriber]bool // true once it has its view (activated)
	src     map[srcKey]*srcState
	// watched: the sources' watchers run (a session has it selected);
	// false while it lingers.
	watched bool
	// view is the view as last built, shared by the sessions it was
	// given to; nil once a sync changed anything.
	view *MailboxView
	// unwatch stops the watchers of a lingering mailbox after
	// ManagerOptions.WatchLinger (so that a client selecting it again
	// soon, or going back and forth between folders, finds it watched
	// and synced).
	unwatch *time.Timer
}

// srcState is one source of a selected virtual mailbox.
type srcState struct {
	msgs   map[uint32]ViewMessage // as of the last sync; nil before one
	perm   []imap.Flag
	synced bool
	// failed: the last sync failed (the upstream is down). New views
	// leave the source out; sessions that have its messages keep them
	// (an outage is not an expunge), and a new view has them again once
	// a sync succeeds.
	failed bool
	// mark is what the last sync's EXAMINE reported (zero before one, or
	// after a failure): the next sync starts from it.
	mark SyncMark
	// began is when the sync that made the current state began; with a
	// watcher live since before then, and no change reported, the state
	// is current.
	began    time.Time
	starting time.Time    // when the running sync began
	running  bool         // a sync worker runs
	again    bool         // another sync is wanted when it ends
	waiting  []chan error // told when the running sync ends
	next     []chan error // told when the next sync ends
	// After a failed sync the source is tried again after retryDelay
	// (doubling up to maxSyncRetry), so that it comes back by itself.
	retry      *time.Timer
	retryDelay time.Duration
}

// run is the hub goroutine.
func (h *Hub) run() {
	defer h.recoverLog("hub")
	s := &hubState{
		h:         h,
		subs:      make(map[*Subscriber]struct{}),
		known:     make(map[string]router.TreeAccount),
		mailboxes: make(map[string]*vmState),
		watchers:  make(map[srcKey]*watchEntry),
		linger:    time.NewTimer(h.m.o.Linger),
	}
	s.rebuildTree()
	for {
		select {
		case ev := <-h.events:
			ev.apply(s)
		case <-h.dirty:
			s.syncDirty()
		case <-s.linger.C:
			if len(s.subs) == 0 {
				h.m.forget(h)
				s.stop()
				return
			}
		case <-h.closeReq:
			s.stop()
			return
		}
	}
}

// stop ends the hub: no more events, watchers and syncs stopped, pools
// closed, sessions told.
func (s *hubState) stop() {
	h := s.h
	close(h.quit)
	h.cancel()
	s.linger.Stop()
	for _, vs := range s.mailboxes {
		if vs.unwatch != nil {
			vs.unwatch.Stop()
		}
		for _, ss := range vs.src {
			if ss.retry != nil {
				ss.retry.Stop()
			}
		}
	}
	for _, we := range s.watchers {
		h.wg.Go(we.w.Stop)
	}
	for sub := range s.subs {
		sub.close()
	}
	h.wg.Wait()
	var wg sync.WaitGroup
	for _, p := range h.pools {
		wg.Go(p.Close)
	}
	for _, p := range h.watchPools {
		wg.Go(p.Close)
	}
	wg.Wait()
	close(h.done)
}

// rebuildTree builds the tree of all accounts, in spec order, those
// whose namespace is not known yet with a guessed one.
func (s *hubState) rebuildTree() {
	var accounts []router.TreeAccount
	ts := treeState{}
	for _, a := range s.h.spec.Accounts {
		ta, ok := s.known[a.Name]
		if ok {
			ts.accounts = append(ts.accounts, a.Name)
		} else {
			ta = router.TreeAccount{Name: a.Name, Prefix: a.Prefix, Delimiter: router.Delimiter}
			ts.missing = append(ts.missing, a)
		}
		accounts = append(accounts, ta)
	}
	ts.tree, ts.err = router.NewTree(accounts, s.h.spec.UnifiedInbox, s.h.spec.UnifiedSpecialUse)
	if ts.err != nil {
		ts.tree, ts.accounts = nil, nil
	}
	s.tree = ts
}

// attachEvent registers a session.
type attachEvent struct{ sub *Subscriber }

func (ev attachEvent) apply(s *hubState) {
	s.subs[ev.sub] = struct{}{}
	s.linger.Stop()
}

// detachEvent ends a session.
type detachEvent struct{ sub *Subscriber }

func (ev detachEvent) apply(s *hubState) {
	if _, ok := s.subs[ev.sub]; !ok {
		return
	}
	s.unselect(ev.sub)
	delete(s.subs, ev.sub)
	if len(s.subs) == 0 {
		s.linger.Reset(s.h.m.o.Linger)
	}
}

// unselectEvent ends a session's selection.
type unselectEvent struct{ sub *Subscriber }

func (ev unselectEvent) apply(s *hubState) { s.unselect(ev.sub) }

// treeEvent asks for the tree.
type treeEvent struct{ reply chan treeState }

func (ev treeEvent) apply(s *hubState) { ev.reply <- s.tree }

// learnEvent adds accounts whose namespace a caller learned.
type learnEvent struct {
	accounts []router.TreeAccount
	reply    chan treeState
}

func (ev learnEvent) apply(s *hubState) {
	for _, a := range ev.accounts {
		s.known[a.Name] = a
	}
	s.rebuildTree()
	ev.reply <- s.tree
}

// selectEvent registers sub as selecting a virtual mailbox and asks for a
// sync of each source; the reply has a channel per source that tells
// when it is synced.
type selectEvent struct {
	sub     *Subscriber
	name    string
	vm      store.VMailbox
	sources []router.Source
	reply   chan []chan error
}

func (ev selectEvent) apply(s *hubState) {
	s.unselect(ev.sub)
	if _, ok := s.subs[ev.sub]; !ok {
		ev.reply <- nil // detached
		return
	}
	vs := s.mailboxes[ev.name]
	if vs != nil && !vs.watched && (vs.vm.ID != ev.vm.ID || vs.vm.UIDValidity != ev.vm.UIDValidity) {
		// The virtual mailbox was deleted and made again (or renamed)
		// while it lingered: its state names other vuids.
		s.drop(vs)
		vs = nil
	}
	if vs == nil {
		vs = &vmState{name: ev.name, subs: make(map[*Subscriber]bool), src: make(map[srcKey]*srcState)}
		s.mailboxes[ev.name] = vs
	}
	vs.vm = ev.vm
	if vs.unwatch != nil {
		vs.unwatch.Stop()
		vs.unwatch = nil
	}
	s.lingering = slices.DeleteFunc(s.lingering, func(l *vmState) bool { return l == vs })
	if !vs.watched {
		vs.watched = true
		s.lingering = slices.DeleteFunc(s.lingering, func(l *vmState) bool { return l == vs })
		for _, src := range vs.sources {
			s.watch(srcKey(src))
		}
	}
	for _, src := range ev.sources {
		key := srcKey(src)
		if vs.src[key] == nil {
			vs.src[key] = &srcState{}
			vs.sources = append(vs.sources, src)
			s.watch(key)
		}
	}
	vs.subs[ev.sub] = false
	ev.sub.mailbox = ev.name
	waits := make([]chan error, len(ev.sources))
	for i, src := range ev.sources {
		waits[i] = make(chan error, 1)
		if s.current(vs, srcKey(src)) {
			waits[i] <- nil
			continue
		}
		s.requestSync(vs, srcKey(src), waits[i])
	}
	ev.reply <- waits
}

// activateEvent gives a selecting session its view; from then on it gets
// the updates. The reply is nil when the selection was superseded.
type activateEvent struct {
	sub   *Subscriber
	name  string
	reply chan *MailboxView
}

func (ev activateEvent) apply(s *hubState) {
	vs := s.mailboxes[ev.name]
	if vs == nil || ev.sub.mailbox != ev.name {
		ev.reply <- nil
		return
	}
	if vs.view == nil {
		vs.view = vs.build()
	}
	view := new(MailboxView)
	*view = *vs.view // the messages are shared
	view.VMailbox = vs.vm
	ev.sub.maxSeen = 0
	if n := len(view.Messages); n > 0 {
		ev.sub.maxSeen = view.Messages[n-1].VUID
		view.VMailbox.UIDNext = max(view.VMailbox.UIDNext, ev.sub.maxSeen+1)
	}
	vs.subs[ev.sub] = true
	ev.reply <- view
}

// build makes the view of the synced sources.
func (vs *vmState) build() *MailboxView {
	view := &MailboxView{}
	var perms [][]imap.Flag
	n := 0
	for _, ss := range vs.src {
		n += len(ss.msgs)
	}
	view.Messages = make([]ViewMessage, 0, n)
	for _, src := range vs.sources {
		ss := vs.src[srcKey(src)]
		if !ss.synced || ss.failed {
			continue
		}
		for _, m := range ss.msgs {
			view.Messages = append(view.Messages, m)
		}
		perms = append(perms, ss.perm)
	}
	slices.SortFunc(view.Messages, func(a, b ViewMessage) int { return cmpVUID(a.VUID, b.VUID) })
	view.Flags = mailboxFlags(view.Messages, perms)
	view.PermanentFlags = permanentFlags(perms)
	return view
}

// watcherCountEvent asks for the number of running watchers (tests).
type watcherCountEvent struct{ reply chan int }

func (ev watcherCountEvent) apply(s *hubState) { ev.reply <- len(s.watchers) }

// unselect drops sub's selection and its pending updates. A mailbox no
// session has selected any more lingers: its watchers stop, its state
// stays for a quick sync when it is selected again (the oldest beyond
// maxLingering is dropped).
func (s *hubState) unselect(sub *Subscriber) {
	sub.clear()
	if sub.mailbox == "" {
		return
	}
	vs := s.mailboxes[sub.mailbox]
	sub.mailbox = ""
	if vs == nil {
		return
	}
	delete(vs.subs, sub)
	if len(vs.subs) > 0 {
		return
	}
	vs.endWaits()
	s.lingering = append(s.lingering, vs)
	if len(s.lingering) > maxLingering {
		s.drop(s.lingering[0])
	}
	// Watchers hold upstream connections: only the latest few lingering
	// mailboxes keep theirs.
	watched := 0
	for i := len(s.lingering) - 1; i >= 0; i-- {
		if l := s.lingering[i]; l.watched {
			if watched++; watched > maxLingeringWatched {
				s.quiesce(l)
			}
		}
	}
	h := s.h
	vs.unwatch = time.AfterFunc(h.m.o.WatchLinger, func() { h.send(h.ctx, unwatchEvent{vs}) })
}

// current reports whether a source's state can be given without a sync:
// synced, no sync running or asked for, and its watcher idling since
// before that sync began, with no change reported since.
func (s *hubState) current(vs *vmState, key srcKey) bool {
	ss := vs.src[key]
	we := s.watchers[key]
	if ss == nil || !ss.synced || ss.running || ss.again || we == nil {
		return false
	}
	live := we.w.LiveSince()
	if live.IsZero() || !live.Before(ss.began) {
		return false
	}
	h := s.h
	h.dirtyMu.Lock()
	dirty := h.dirtySet[key]
	h.dirtyMu.Unlock()
	return !dirty
}

// unwatchEvent stops the watchers of a mailbox that still lingers.
type unwatchEvent struct{ vs *vmState }

func (ev unwatchEvent) apply(s *hubState) {
	vs := ev.vs
	if s.mailboxes[vs.name] != vs || len(vs.subs) > 0 {
		return
	}
	s.quiesce(vs)
}

// quiesce stops what runs for a mailbox with no session: its watchers,
// its retries, and the waits of selections that ended.
func (s *hubState) quiesce(vs *vmState) {
	vs.endWaits()
	for key, ss := range vs.src {
		if ss.retry != nil {
			ss.retry.Stop()
		}
		if vs.watched {
			s.unwatch(key)
		}
	}
	vs.watched = false
	if vs.unwatch != nil {
		vs.unwatch.Stop()
		vs.unwatch = nil
	}
}

// endWaits tells the selections waiting for syncs of vs that they
// ended.
func (vs *vmState) endWaits() {
	for _, ss := range vs.src {
		for _, ch := range append(ss.waiting, ss.next...) {
			ch <- errUnselected
		}
		ss.waiting, ss.next = nil, nil
	}
}

// drop forgets a mailbox that no session has selected.
func (s *hubState) drop(vs *vmState) {
	s.quiesce(vs)
	s.lingering = slices.DeleteFunc(s.lingering, func(l *vmState) bool { return l == vs })
	if s.mailboxes[vs.name] == vs {
		delete(s.mailboxes, vs.name)
	}
}

// watch adds a reference to the watcher of key, starting it if none runs.
func (s *hubState) watch(key srcKey) {
	if we := s.watchers[key]; we != nil {
		we.refs++
		return
	}
	h := s.h
	w := StartWatch(h.ctx, WatchOptions{
		Pool:     h.watchPools[key.Account],
		Mailbox:  key.Mailbox,
		Interval: h.m.o.WatchInterval,
		OnChange: func() { h.noteChange(key) },
		// The first sync may have run before the watch was ready: one more
		// closes the window in which a change could go unseen.
		OnReady: func() { h.noteChange(key) },
		Logger:  h.log.With("account", key.Account),
	})
	h.watchStarts.Add(1)
	s.watchers[key] = &watchEntry{w: w, refs: 1}
}

// unwatch drops a reference to the watcher of key and stops it (without
// waiting here) when none is left.
func (s *hubState) unwatch(key srcKey) {
	we := s.watchers[key]
	if we == nil {
		return
	}
	if we.refs--; we.refs > 0 {
		return
	}
	delete(s.watchers, key)
	s.h.wg.Go(we.w.Stop)
}

// noteChange records a watcher's change; it runs on the watcher's
// goroutine and never waits for the hub.
func (h *Hub) noteChange(key srcKey) {
	h.dirtyMu.Lock()
	h.dirtySet[key] = true
	h.dirtyMu.Unlock()
	select {
	case h.dirty <- struct{}{}:
	default:
	}
}

// syncDirty syncs the sources the watchers reported.
func (s *hubState) syncDirty() {
	h := s.h
	h.dirtyMu.Lock()
	set := h.dirtySet
	h.dirtySet = make(map[srcKey]bool)
	h.dirtyMu.Unlock()
	for key := range set {
		for _, vs := range s.mailboxes {
			if vs.watched && vs.src[key] != nil {
				s.requestSync(vs, key, nil)
			}
		}
	}
}

// requestSync asks for a sync of a source that starts after now: at once
// if none runs, else after the running one. done, if not nil, is told
// its outcome.
func (s *hubState) requestSync(vs *vmState, key srcKey, done chan error) {
	ss := vs.src[key]
	if ss.running {
		ss.again = true
		if done != nil {
			ss.next = append(ss.next, done)
		}
		return
	}
	if done != nil {
		ss.waiting = append(ss.waiting, done)
	}
	s.startSync(vs, key, ss)
}

// startSync starts a sync worker for one source.
func (s *hubState) startSync(vs *vmState, key srcKey, ss *srcState) {
	h := s.h
	ss.running = true
	name, vm := vs.name, vs.vm
	ss.starting = time.Now()
	h.syncStarts.Add(1)
	var since *SyncMark
	if ss.synced && ss.mark.usable() {
		m := ss.mark
		since = &m
	}
	h.wg.Go(func() { h.syncWorker(name, vm, key, ss, since) })
}

// syncWorker syncs one source on a pooled client and reports to the hub.
func (h *Hub) syncWorker(name string, vm store.VMailbox, key srcKey, ss *srcState, since *SyncMark) {
	defer h.recoverLog("sync")
	pool := h.pools[key.Account]
	c, err := pool.Get(h.ctx)
	var res SyncResult
	if err == nil {
		res, err = SyncSourceSince(h.ctx, h.st, vm, key.Account, c, key.Mailbox, since)
		if err != nil {
			// The connection may be stuck on a mailbox deleted under it
			// (Dovecot then answers every command on it with NO): the
			// retry gets a fresh one.
			c.Close()
		}
		pool.Put(c)
	}
	select {
	case h.events <- syncDoneEvent{name: name, key: key, ss: ss, res: res, err: err}:
	case <-h.quit:
	}
}

// syncDoneEvent is a sync worker's result.
type syncDoneEvent struct {
	name string
	key  srcKey
	ss   *srcState // the state it synced for; stale if the mailbox was dropped
	res  SyncResult
	err  error
}

func (ev syncDoneEvent) apply(s *hubState) {
	vs := s.mailboxes[ev.name]
	if vs == nil || vs.src[ev.key] != ev.ss {
		return // unselected meanwhile; its waiters were told
	}
	ss := ev.ss
	if ev.err != nil {
		ss.mark, ss.began = SyncMark{}, time.Time{}
		if !ss.failed {
			ss.failed, vs.view = true, nil
		}
		ss.retryDelay = min(max(2*ss.retryDelay, minSyncRetry), maxSyncRetry)
		s.h.log.Warn("sync failed", "mailbox", ev.name, "account", ev.key.Account, "upstream_mailbox", ev.key.Mailbox, "err", ev.err, "retry", ss.retryDelay)
		if ss.retry != nil {
			ss.retry.Stop()
		}
		h, key := s.h, ev.key
		if vs.watched {
			ss.retry = time.AfterFunc(ss.retryDelay, func() { h.noteChange(key) })
		}
	} else {
		ss.retryDelay = 0
		ss.began = ss.starting
		if ss.failed {
			ss.failed, vs.view = false, nil
		}
		s.applySync(vs, ev.key, ss, ev.res)
	}
	for _, ch := range ss.waiting {
		ch <- ev.err
	}
	ss.waiting, ss.running = nil, false
	if ss.again {
		ss.again = false
		ss.waiting, ss.next = ss.next, nil
		s.startSync(vs, ev.key, ss)
	}
}

// applySync keeps a source's new state and queues what changed since the
// last sync for the sessions that have their view.
func (s *hubState) applySync(vs *vmState, key srcKey, ss *srcState, res SyncResult) {
	switch {
	case res.Unchanged:
		return
	case res.FlagsOnly:
		s.applyFlags(vs, key, ss, res)
		return
	}
	ss.mark = res.Mark
	msgs := make(map[uint32]ViewMessage, len(res.Messages))
	u := Update{Mailbox: vs.name}
	for _, m := range res.Messages {
		vm := ViewMessage{VUID: m.VUID, Account: key.Account, Mailbox: key.Mailbox, UIDValidity: res.UIDValidity, UID: m.UID, Flags: m.Flags}
		msgs[m.VUID] = vm
		old, ok := ss.msgs[m.VUID]
		switch {
		case !ok:
			u.Added = append(u.Added, vm)
		case !sameFlags(old.Flags, m.Flags):
			u.Flags = append(u.Flags, vm)
		}
	}
	for v := range ss.msgs {
		if _, ok := msgs[v]; !ok {
			u.Removed = append(u.Removed, v)
		}
	}
	ss.msgs, ss.perm, ss.synced = msgs, res.PermanentFlags, true
	vs.view = nil
	s.publish(vs, u)
}

// applyFlags applies a sync that found only flag changes. A UID the
// hub does not know (its state is older than the mark) makes the next
// sync a full one.
func (s *hubState) applyFlags(vs *vmState, key srcKey, ss *srcState, res SyncResult) {
	byUID := make(map[imap.UID]uint32, len(ss.msgs))
	for v, m := range ss.msgs {
		byUID[m.UID] = v
	}
	u := Update{Mailbox: vs.name}
	for _, it := range res.Changed {
		v, ok := byUID[it.UID]
		if !ok {
			ss.mark, ss.again = SyncMark{}, true
			continue
		}
		m := ss.msgs[v]
		if sameFlags(m.Flags, it.Flags) {
			continue
		}
		m.Flags = it.Flags
		ss.msgs[v] = m
		u.Flags = append(u.Flags, m)
		vs.view = nil
	}
	if !ss.again {
		ss.mark = res.Mark
	}
	s.publish(vs, u)
}

// publish queues u for the sessions of vs that have their view.
func (s *hubState) publish(vs *vmState, u Update) {
	if len(u.Added)+len(u.Removed)+len(u.Flags) == 0 {
		return
	}
	sortUpdate(&u)
	for sub, active := range vs.subs {
		if active {
			sub.push(u)
		}
	}
}
