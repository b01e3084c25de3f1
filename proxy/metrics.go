package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus metrics.
type Metrics struct {
	Connections     *prometheus.CounterVec   // by listener
	ConnsRejected   *prometheus.CounterVec   // by reason
	ActiveConns     prometheus.Gauge         // open client connections
	Logins          *prometheus.CounterVec   // by result
	ActiveSessions  *prometheus.GaugeVec     // by mode, after login
	UpstreamDial    *prometheus.HistogramVec // dial + login seconds, by upstream
	RelayedBytes    *prometheus.CounterVec   // by upstream and direction
	UpstreamFailure *prometheus.CounterVec   // by upstream and kind
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapproxy_connections_total", Help: "Client connections accepted.",
		}, []string{"listener"}),
		ConnsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapproxy_connections_rejected_total", Help: "Client connections refused before the greeting.",
		}, []string{"reason"}),
		ActiveConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "imapproxy_connections_active", Help: "Open client connections.",
		}),
		Logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapproxy_logins_total", Help: "Login attempts by result.",
		}, []string{"result"}),
		ActiveSessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "imapproxy_sessions_active", Help: "Logged-in sessions by mode.",
		}, []string{"mode"}),
		UpstreamDial: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "imapproxy_upstream_login_seconds",
			Help:    "Time to dial and log in to an upstream.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"upstream"}),
		RelayedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapproxy_relayed_bytes_total", Help: "Bytes relayed in route mode.",
		}, []string{"upstream", "direction"}),
		UpstreamFailure: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapproxy_upstream_failures_total", Help: "Failed upstream dials and logins.",
		}, []string{"upstream", "kind"}),
	}
	if reg != nil {
		reg.MustRegister(m.Connections, m.ConnsRejected, m.ActiveConns, m.Logins,
			m.ActiveSessions, m.UpstreamDial, m.RelayedBytes, m.UpstreamFailure)
	}
	return m
}
