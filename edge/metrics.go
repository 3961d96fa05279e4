package edge

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the proxy's Prometheus collectors, on a registry of their
// own so that tests can run several servers in one process.
type metrics struct {
	reg            *prometheus.Registry
	sessionsActive prometheus.Gauge
	sessionsTotal  *prometheus.CounterVec
	loginsOK       *prometheus.CounterVec
	loginsFailed   *prometheus.CounterVec
	bytes          *prometheus.CounterVec
	dialSeconds    *prometheus.HistogramVec
	handshake      prometheus.Histogram
	bans           prometheus.Counter
	phaseCuts      *prometheus.CounterVec
}

func newMetrics(bannedNow func() int, storeUp func() bool) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		sessionsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xpra_edge_sessions_active", Help: "Relayed sessions now live."}),
		sessionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xpra_edge_sessions_total", Help: "Relayed sessions started, by auth module."}, []string{"module"}),
		loginsOK: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xpra_edge_logins_total", Help: "Successful logins, by auth module."}, []string{"module"}),
		loginsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xpra_edge_login_failures_total", Help: "Failed logins, by listener."}, []string{"listener"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xpra_edge_relayed_bytes_total", Help: "Bytes relayed, by direction (from_client, from_server), counted when a session ends."}, []string{"direction"}),
		dialSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "xpra_edge_backend_dial_seconds", Help: "Time to connect to a backend.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9)}, []string{"result"}),
		handshake: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "xpra_edge_handshake_seconds", Help: "Time from accept to a relayed session (auth, routing, backend hello).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}),
		bans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xpra_edge_bans_total", Help: "Addresses banned after repeated failed logins."}),
		phaseCuts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xpra_edge_login_phase_timeouts_total", Help: "Connections closed by the phase timer because a login phase overran its bound, by phase."}, []string{"phase"}),
	}
	m.reg.MustRegister(m.sessionsActive, m.sessionsTotal, m.loginsOK, m.loginsFailed, m.bytes,
		m.dialSeconds, m.handshake, m.bans, m.phaseCuts,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xpra_edge_banned_addresses", Help: "Addresses banned now."},
			func() float64 { return float64(bannedNow()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xpra_edge_store_up",
			Help: "1 while the shared state (bans, session registry) works: always without a fleet; 0 while the fleet's PostgreSQL is unreachable (new logins are refused)."},
			func() float64 {
				if storeUp() {
					return 1
				}
				return 0
			}),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// phaseCut counts a connection closed by its phase timer.
func (m *metrics) phaseCut(phase string) { m.phaseCuts.WithLabelValues(phase).Inc() }

// watchUnauth exports the number of connections not logged in yet.
func (m *metrics) watchUnauth(n func() int64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "xpra_edge_unauthenticated", Help: "Connections not logged in yet (sniffing, TLS, login; idle HTTP keep-alive ones included)."},
		func() float64 { return float64(n()) }))
}

func (m *metrics) sessionStarted(module string) {
	m.sessionsActive.Inc()
	m.sessionsTotal.WithLabelValues(module).Inc()
}

func (m *metrics) sessionEnded(fromClient, fromServer int64) {
	m.sessionsActive.Dec()
	m.bytes.WithLabelValues("from_client").Add(float64(fromClient))
	m.bytes.WithLabelValues("from_server").Add(float64(fromServer))
}

func (m *metrics) loginOK(module string) { m.loginsOK.WithLabelValues(module).Inc() }

func (m *metrics) authFailed(meta connMeta) {
	name := ""
	if meta.listener != nil {
		name = meta.listener.Name
	}
	m.loginsFailed.WithLabelValues(name).Inc()
}

func (m *metrics) observeDial(d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.dialSeconds.WithLabelValues(result).Observe(d.Seconds())
}

// Registry is the Prometheus registry with the proxy's metrics, for an
// admin listener; cmd may register more collectors on it.
func (s *Server) Registry() *prometheus.Registry { return s.metrics.reg }
