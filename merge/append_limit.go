package merge

// This file holds APPENDLIMIT (RFC 7889): the merged session's limit is
// the smallest of the limits its accounts' upstreams advertise, and an
// APPEND larger than its target upstream's limit is answered NO [TOOBIG]
// before anything goes upstream.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
)

// appendLimitWait bounds how long LearnAppendLimit waits for an account's
// connection.
const appendLimitWait = 2 * time.Second

// upstreamAppendLimit returns the limit an upstream's capabilities
// advertise ("APPENDLIMIT=n"); a bare APPENDLIMIT (limits per mailbox)
// or none is no limit here.
func upstreamAppendLimit(caps imap.CapSet) (uint32, bool) {
	limit, ok := caps.AppendLimit()
	if !ok || limit == nil {
		return 0, false
	}
	return *limit, true
}

// LearnAppendLimit returns the smallest APPENDLIMIT the upstreams of the
// user's accounts advertise, asking each account's pooled connection (in
// parallel, dialling under ctx where the pool has none, at most
// appendLimitWait); ok is false when none of the reachable ones
// advertises a limit. The front end advertises
// it as the session's APPENDLIMIT (imapserver.SessionAppendLimit).
func (s *Session) LearnAppendLimit(ctx context.Context) (limit uint32, ok bool) {
	// A login must not wait long for an account that is slow to answer:
	// it is left out (and is still checked per APPEND).
	ctx, cancel := context.WithTimeout(ctx, appendLimitWait)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, a := range s.spec.Accounts {
		pool := s.hub.pools[a.Name]
		wg.Go(func() {
			c, err := pool.Get(ctx)
			if err != nil {
				s.log.Debug("appendlimit: account left out", "account", a.Name, "err", err)
				return
			}
			n, has := upstreamAppendLimit(c.Caps())
			pool.Put(c)
			if !has {
				return
			}
			mu.Lock()
			if !ok || n < limit {
				limit, ok = n, true
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return limit, ok
}

// checkAppendSize answers NO [TOOBIG] for a message of size bytes over
// the limit caps advertise.
func checkAppendSize(caps imap.CapSet, size int64) error {
	if limit, ok := upstreamAppendLimit(caps); ok && size > int64(limit) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig,
			Text: fmt.Sprintf("The message is larger than the %d bytes this folder's server accepts", limit)}
	}
	return nil
}

// statusAppendLimit is the APPENDLIMIT of a STATUS: the smallest limit of
// the sources' upstreams (nil: none advertises one).
func statusAppendLimit(limit *uint32, caps imap.CapSet) *uint32 {
	n, ok := upstreamAppendLimit(caps)
	if !ok || limit != nil && *limit <= n {
		return limit
	}
	return &n
}
