package merge

import (
	"context"
	"fmt"

	"github.com/emersion/go-imap/v2"

	"imapproxy/upstream"
)

// transferConns holds one pooled client per account for a transfer or a
// recovery, with the mailbox it has selected. A client that broke is
// given back and replaced on the next get, so that settling after a
// failure runs on healthy connections.
type transferConns struct {
	t    *Transfers
	held map[string]*transferConn
}

// transferConn is a held client and its selection.
type transferConn struct {
	c        *upstream.Client
	mailbox  string
	readOnly bool
	data     *imap.SelectData // nil: nothing selected
}

func (t *Transfers) conns() *transferConns {
	return &transferConns{t: t, held: make(map[string]*transferConn)}
}

// client returns account's client, getting a healthy one from the pool
// when none is held or the held one broke.
func (cs *transferConns) client(ctx context.Context, account string) (*transferConn, error) {
	tc := cs.held[account]
	if tc != nil && !tc.c.Broken() {
		return tc, nil
	}
	pool := cs.t.Pools[account]
	if pool == nil {
		return nil, fmt.Errorf("merge: transfer: unknown account %q", account)
	}
	if tc != nil {
		pool.Put(tc.c)
		delete(cs.held, account)
	}
	c, err := pool.Get(ctx)
	if err != nil {
		return nil, err
	}
	tc = &transferConn{c: c}
	cs.held[account] = tc
	return tc, nil
}

// get returns account's client with mailbox selected (read-write unless
// readOnly; a read-write selection serves a read-only use too) and the
// SELECT's data.
func (cs *transferConns) get(ctx context.Context, account, mailbox string, readOnly bool) (*upstream.Client, *imap.SelectData, error) {
	tc, err := cs.client(ctx, account)
	if err != nil {
		return nil, nil, err
	}
	if tc.data != nil && tc.mailbox == mailbox && (readOnly || !tc.readOnly) {
		return tc.c, tc.data, nil
	}
	tc.data = nil
	data, err := tc.c.Select(ctx, mailbox, readOnly)
	if err != nil {
		return nil, nil, err
	}
	tc.mailbox, tc.readOnly, tc.data = mailbox, readOnly, data
	return tc.c, data, nil
}

// forget makes the next get of account select again (for a fresh
// UIDNEXT).
func (cs *transferConns) forget(account string) {
	if tc := cs.held[account]; tc != nil {
		tc.data = nil
	}
}

// release gives every client back to its pool.
func (cs *transferConns) release() {
	for account, tc := range cs.held {
		cs.t.Pools[account].Put(tc.c)
	}
	cs.held = nil
}
