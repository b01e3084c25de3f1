package plugins

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the plugins' Prometheus metrics.
type Metrics struct {
	// Calls counts calls by plugin and result: allow, deny, continue,
	// route, merge, default, reject, cached_<result>, and the failures
	// error, timeout, malformed, unavailable.
	Calls *prometheus.CounterVec
	// Seconds is the time of each call that reached the plugin.
	Seconds *prometheus.HistogramVec
	// Restarts counts restarts after a plugin died.
	Restarts *prometheus.CounterVec
	// Up is 1 while a plugin's process runs.
	Up *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapproxy_plugin_calls_total", Help: "Plugin calls by plugin and result.",
		}, []string{"plugin", "result"}),
		Seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "imapproxy_plugin_call_seconds",
			Help:    "Time of plugin calls.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"plugin"}),
		Restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "imapproxy_plugin_restarts_total", Help: "Plugin processes restarted after they died.",
		}, []string{"plugin"}),
		Up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "imapproxy_plugin_up", Help: "Whether a plugin's process is running.",
		}, []string{"plugin"}),
	}
	if reg != nil {
		reg.MustRegister(m.Calls, m.Seconds, m.Restarts, m.Up)
	}
	return m
}
