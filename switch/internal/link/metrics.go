package link

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/goldcard/goldcard/switch/internal/metric"
)

// metrics are the links' series, by bank (a shared port's banks joined
// by +).
type metrics struct {
	inFlight      *prometheus.GaugeVec   // bank
	connections   *prometheus.GaugeVec   // bank, state
	connEvents    *prometheus.CounterVec // bank, event
	limitBreaches *prometheus.CounterVec // bank, limit
	frames        *prometheus.CounterVec // bank, direction
	bytes         *prometheus.CounterVec // bank, direction
	unpackErrors  *prometheus.CounterVec // bank, reason
	macFailures   *prometheus.CounterVec // bank, reason
	lostResponses *prometheus.CounterVec // bank
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: metric.InFlight,
			Help: "Requests read and not yet answered.",
		}, []string{"bank"}),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: metric.Connections,
			Help: "Open bank connections by state: connected, signed_on (after a 0800 sign-on, until sign-off) or draining (at shutdown or when the bank moves).",
		}, []string{"bank", "state"}),
		connEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metric.ConnectionEvents,
			Help: "Bank connections accepted, refused and closed, with the reason.",
		}, []string{"bank", "event"}),
		limitBreaches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metric.LimitBreaches,
			Help: "Link limits breached, by bank and limit: idle, slow_frame and frame_size close the link; rate answers the request 91.",
		}, []string{"bank", "limit"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metric.Frames,
			Help: "Frames read from (in) and written to (out) banks.",
		}, []string{"bank", "direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metric.Bytes,
			Help: "Bytes of frames, length headers included, read from (in) and written to (out) banks.",
		}, []string{"bank", "direction"}),
		unpackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metric.UnpackErrors,
			Help: "Frames that could not be unpacked (answered with 30 when their MTI was readable), by reason: the MTI (mti), the bitmap (bitmap) or a field (field) cannot be read, or bytes follow the last field (trailing_bytes).",
		}, []string{"bank", "reason"}),
		macFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metric.MACFailures,
			Help: "Requests declined A0 because their MAC was missing (missing) or did not verify (mismatch).",
		}, []string{"bank", "reason"}),
		lostResponses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metric.ResponsesLost,
			Help: "Responses decided but not delivered because the link went down first.",
		}, []string{"bank"}),
	}
	if reg != nil {
		reg.MustRegister(m.inFlight, m.connections, m.connEvents, m.limitBreaches, m.frames, m.bytes,
			m.unpackErrors, m.macFailures, m.lostResponses)
	}
	return m
}

// listenerSeries makes a listener's series exist from the start, at zero,
// so that "no link up" shows as zero rather than as nothing.
func (m *metrics) listenerSeries(label string, codes []string) {
	for _, st := range []string{metric.LinkConnected, metric.LinkSignedOn} {
		m.connections.WithLabelValues(label, st).Add(0)
	}
	for _, reason := range unpackReasons {
		m.unpackErrors.WithLabelValues(label, reason)
	}
	for _, limit := range []string{limitIdle, limitSlowFrame, limitFrameSize, limitRate} {
		m.limitBreaches.WithLabelValues(label, limit)
	}
	m.lostResponses.WithLabelValues(label)
	for _, code := range codes {
		for _, reason := range []string{"missing", "mismatch"} {
			m.macFailures.WithLabelValues(code, reason)
		}
	}
}
