package main

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the switch's Prometheus metrics. Labels have bounded
// values: bank codes, MTIs the switch answers, transaction types and
// response codes; never a PAN, STAN or order id.
type metrics struct {
	reg *prometheus.Registry

	requests       *prometheus.CounterVec   // bank, mti, processing_code, response_code
	latency        *prometheus.HistogramVec // bank, mti
	inFlight       *prometheus.GaugeVec     // bank
	connections    *prometheus.GaugeVec     // bank, state
	connEvents     *prometheus.CounterVec   // bank, event
	limitBreaches  *prometheus.CounterVec   // bank, limit
	frames         *prometheus.CounterVec   // bank, direction
	bytes          *prometheus.CounterVec   // bank, direction
	unpackErrors   *prometheus.CounterVec   // bank, reason
	macFailures    *prometheus.CounterVec   // bank, reason
	adminRefused   *prometheus.CounterVec   // reason
	lostResponses  *prometheus.CounterVec   // bank
	ledgerDuration *prometheus.HistogramVec // outcome

	redemptions       *prometheus.CounterVec   // bank, purpose, result
	redemptionLatency *prometheus.HistogramVec // purpose
	deadlineMisses    *prometheus.CounterVec   // bank, stage
	lockWait          prometheus.Histogram
	ordersSettled     *prometheus.CounterVec // state
	quotaRejections   *prometheus.CounterVec // bank
	exceptions        *prometheus.CounterVec // bank, kind

	holdsExpired prometheus.Counter

	timerLateness *prometheus.HistogramVec // kind
	timerRetries  *prometheus.CounterVec   // kind
	timerDead     *prometheus.CounterVec   // kind
	timerLeader   prometheus.Gauge
	leaderChanges prometheus.Counter

	configRevision prometheus.Gauge
	configApply    prometheus.Histogram
	configRejected prometheus.Counter
}

// latencyBuckets resolve the range that matters against a 3 s timeout.
var latencyBuckets = []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 2.7, 3, 5}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcard_requests_total",
			Help: "Requests answered, by bank, MTI, transaction type (first two digits of DE3) and response code.",
		}, []string{"bank", "mti", "processing_code", "response_code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "goldcard_request_duration_seconds",
			Help:    "Time from a request's arrival to its response being written.",
			Buckets: latencyBuckets,
		}, []string{"bank", "mti"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "goldcard_requests_in_flight",
			Help: "Requests read and not yet answered.",
		}, []string{"bank"}),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "goldcard_connections",
			Help: "Open bank connections by state: connected, signed_on (after a 0800 sign-on, until sign-off) or draining (at shutdown or when the bank moves).",
		}, []string{"bank", "state"}),
		connEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcard_connection_events_total",
			Help: "Bank connections accepted, refused and closed, with the reason.",
		}, []string{"bank", "event"}),
		limitBreaches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcard_limit_breaches_total",
			Help: "Link limits breached, by bank and limit: idle, slow_frame and frame_size close the link; rate answers the request 91.",
		}, []string{"bank", "limit"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcard_frames_total",
			Help: "Frames read from (in) and written to (out) banks.",
		}, []string{"bank", "direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcard_bytes_total",
			Help: "Bytes of frames, length headers included, read from (in) and written to (out) banks.",
		}, []string{"bank", "direction"}),
		unpackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcard_unpack_errors_total",
			Help: "Frames that could not be unpacked (answered with 30 when their MTI was readable), by reason: the MTI (mti), the bitmap (bitmap) or a field (field) cannot be read, or bytes follow the last field (trailing_bytes).",
		}, []string{"bank", "reason"}),
		macFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcard_mac_failures_total",
			Help: "Requests declined A0 because their MAC was missing (missing) or did not verify (mismatch).",
		}, []string{"bank", "reason"}),
		adminRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcard_admin_refused_total",
			Help: "Admin API requests refused 401, by reason: no credentials (missing) or a wrong token (wrong).",
		}, []string{"reason"}),
		lostResponses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcard_responses_lost_total",
			Help: "Responses decided but not delivered because the link went down first.",
		}, []string{"bank"}),
		ledgerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "goldcard_ledger_transaction_seconds",
			Help:    "Duration of the ledger transaction deciding a request, commit included.",
			Buckets: latencyBuckets,
		}, []string{"result"}),
		redemptions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcard_redemptions_total",
			Help: "Redemptions asked of the fund company, by bank (admin for transfers out), purpose (shortfall, transfer_out) and result (confirmed, failed, pending, no_answer).",
		}, []string{"bank", "purpose", "result"}),
		redemptionLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "goldcard_redemption_duration_seconds",
			Help:    "Time the fund company took to answer a redemption (or the time given up waiting).",
			Buckets: latencyBuckets,
		}, []string{"purpose"}),
		deadlineMisses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcard_deadline_misses_total",
			Help: "Requests answered 91 because the bank's deadline came first, by bank and by what was awaited: the fund company's confirmation (fund) or the ledger (ledger).",
		}, []string{"bank", "stage"}),
		lockWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "goldcard_lock_wait_seconds",
			Help:    "Time spent waiting for a card's etcd lock, failures included.",
			Buckets: latencyBuckets,
		}),
		ordersSettled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcard_orders_settled_total",
			Help: "Pending redemption orders settled after their request had been answered, by final state.",
		}, []string{"state"}),
		quotaRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcard_quota_rejections_total",
			Help: "Debits declined 61 because the day's instant-redemption quota could not cover their shortfall.",
		}, []string{"bank"}),
		exceptions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcard_exceptions_total",
			Help: "Messages the bank believes moved money that the switch did not post (kept for an operator), by bank and kind.",
		}, []string{"bank", "kind"}),
		holdsExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "goldcard_holds_expired_total",
			Help: "Authorisation holds released because their validity passed uncompleted.",
		}),
		timerLateness: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "goldcard_timer_lateness_seconds",
			Help:    "How late timer tasks started after their due time, by kind.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .5, 1, 5, 30},
		}, []string{"kind"}),
		timerRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcard_timer_retries_total",
			Help: "Timer tasks that failed and were scheduled to run again, by kind.",
		}, []string{"kind"}),
		timerDead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "goldcard_timer_dead_total",
			Help: "Timer tasks parked as dead after their last attempt failed, by kind.",
		}, []string{"kind"}),
		timerLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "goldcard_timer_leader",
			Help: "1 while this instance leads the timer (fires its tasks).",
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "goldcard_timer_leader_changes_total",
			Help: "Times this instance became the timer's leader.",
		}),
		configRevision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "goldcard_config_revision",
			Help: "etcd revision of the config this instance runs on.",
		}),
		configApply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "goldcard_config_apply_seconds",
			Help:    "Time from a config change's arrival from etcd to its being in effect.",
			Buckets: []float64{.0001, .0002, .0005, .001, .002, .005, .01, .05, .1},
		}),
		configRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "goldcard_config_rejected_total",
			Help: "Config changes refused as invalid; the instance kept running on its config.",
		}),
	}
	for _, reason := range []string{refusedMissing, refusedWrong} {
		m.adminRefused.WithLabelValues(reason)
	}
	reg.MustRegister(m.configRevision, m.configApply, m.configRejected, m.holdsExpired,
		m.timerLateness, m.timerRetries, m.timerDead, m.timerLeader, m.leaderChanges,
		m.requests, m.latency, m.inFlight, m.connections, m.connEvents, m.limitBreaches, m.frames, m.bytes,
		m.unpackErrors, m.macFailures, m.adminRefused, m.lostResponses, m.ledgerDuration,
		m.redemptions, m.redemptionLatency, m.deadlineMisses, m.lockWait, m.ordersSettled, m.quotaRejections, m.exceptions,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo())
	return m
}

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

func buildInfo() prometheus.Collector {
	c := commit
	if c == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "goldcard_build_info",
		Help:        "Build of the running switch; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "commit": c, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// mtiLabel keeps the mti label bounded: only MTIs the switch answers.
func mtiLabel(mti string) string {
	switch mti {
	case "0800", "0801", "0100", "0101", "0120", "0121", "0200", "0201", "0220", "0221", "0400", "0401", "0420", "0421":
		return mti
	}
	return "other"
}

// procLabel is the transaction type of DE3, bounded to those known.
func procLabel(txnType string) string {
	if _, ok := txnNames[txnType]; ok {
		return txnType
	}
	if txnType == "" {
		return "none"
	}
	return "other"
}
