package merge

import "time"

// recoverRetry is how long the hub waits before it tries again to settle
// transfers it could not (an upstream down).
const recoverRetry = time.Minute

// recoverTransfers settles the user's unfinished cross-account transfers
// (a crash or restart in the middle of a COPY or MOVE; see
// transfer_recover.go) when the hub starts, and again every recoverRetry
// while some cannot be settled yet. It runs under h.wg and ends with the
// hub.
func (h *Hub) recoverTransfers() {
	defer h.recoverLog("transfer recovery")
	for {
		n, err := h.transfers().Recover(h.ctx)
		if n > 0 {
			h.log.Info("merge: unfinished transfers settled", "count", n)
		}
		if err == nil || h.ctx.Err() != nil {
			return
		}
		h.log.Warn("merge: some transfers cannot be settled yet", "err", err, "retry", recoverRetry)
		t := time.NewTimer(recoverRetry)
		select {
		case <-h.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
