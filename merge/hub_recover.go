package merge

import (
	"cmp"
	"time"
)

// recoverRetry is how often the hub settles transfers left unfinished
// (an upstream down, an APPEND whose outcome was unknown); after a
// failed attempt it tries again sooner, from recoverRetryMin doubling up
// to recoverRetry.
const (
	recoverRetry    = time.Minute
	recoverRetryMin = 5 * time.Second
)

// recoverTransfers settles the user's unfinished cross-account transfers
// (a crash or restart in the middle of a COPY or MOVE, an upstream that
// failed during one; see transfer_recover.go) when the hub starts and
// then every recoverRetry: one store query when there are none. It runs
// under h.wg and ends with the hub.
func (h *Hub) recoverTransfers() {
	defer h.recoverLog("transfer recovery")
	wait := time.Duration(0)
	for {
		n, err := h.transfers().Recover(h.ctx)
		if n > 0 {
			h.log.Info("merge: unfinished transfers settled", "count", n)
		}
		if h.ctx.Err() != nil {
			return
		}
		if err != nil {
			wait = min(max(2*wait, recoverRetryMin), recoverRetry)
			h.log.Warn("merge: some transfers cannot be settled yet", "err", err, "retry", wait)
		} else {
			wait = 0
		}
		t := time.NewTimer(cmp.Or(wait, recoverRetry))
		select {
		case <-h.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
