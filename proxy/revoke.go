package proxy

import (
	"context"
	"time"
)

// pollRevocations ends the sessions of revoked app passwords. The admin
// verbs run in another process and only change the store, so the server
// asks the store; it runs until Shutdown.
func (s *Server) pollRevocations() {
	t := time.NewTicker(s.revokeInt)
	defer t.Stop()
	for {
		select {
		case <-s.stopped:
			return
		case <-t.C:
		}
		live := s.appPasswordSessions()
		if len(live) == 0 {
			continue
		}
		ids := make([]int64, 0, len(live))
		for id := range live {
			ids = append(ids, id)
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.revokeInt)
		revoked, err := s.revoked(ctx, ids)
		cancel()
		if err != nil {
			s.log.Warn("checking app password revocations failed", "err", err)
			continue
		}
		for _, id := range revoked {
			for _, ss := range live[id] {
				ss.log.Info("app password revoked: ending session")
				ss.endWith("This app password was revoked")
			}
		}
	}
}

// appPasswordSessions returns the live sessions by app password ID.
func (s *Server) appPasswordSessions() map[int64][]*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[int64][]*session)
	for ss := range s.sessions {
		if id := ss.appPasswordID.Load(); id != 0 {
			m[id] = append(m[id], ss)
		}
	}
	return m
}
