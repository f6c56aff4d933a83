package issuer

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/internal/metric"
)

// metrics are the issuer's series. Labels have bounded values: bank
// codes, MTIs the switch answers, transaction types and response codes;
// never a PAN, STAN or order id.
type metrics struct {
	requests          *prometheus.CounterVec   // bank, mti, processing_code, response_code
	latency           *prometheus.HistogramVec // bank, mti
	deadlineMisses    *prometheus.CounterVec   // bank, stage
	quotaRejections   *prometheus.CounterVec   // bank
	exceptions        *prometheus.CounterVec   // bank, kind
	ledgerDuration    *prometheus.HistogramVec // result
	redemptions       *prometheus.CounterVec   // bank, purpose, result
	redemptionLatency *prometheus.HistogramVec // purpose
	lockWait          prometheus.Histogram
	ordersSettled     *prometheus.CounterVec // state
	groupSize         prometheus.Histogram
}

// LatencyBuckets resolve the range that matters against a 3 s timeout.
var LatencyBuckets = []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 2.7, 3, 5}

// Stages a deadline is missed at.
const (
	stageFund   = "fund"   // waiting for the fund company's confirmation
	stageLedger = "ledger" // waiting for the ledger
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metric.Requests,
			Help: "Requests answered, by bank, MTI, transaction type (first two digits of DE3) and response code.",
		}, []string{"bank", "mti", "processing_code", "response_code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metric.RequestDuration,
			Help:    "Time from a request's arrival to its response being written.",
			Buckets: LatencyBuckets,
		}, []string{"bank", "mti"}),
		ledgerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metric.LedgerTransaction,
			Help:    "Duration of the ledger transaction deciding a request, commit included.",
			Buckets: LatencyBuckets,
		}, []string{"result"}),
		redemptions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metric.Redemptions,
			Help: "Redemptions asked of the fund company, by bank (admin for transfers out), purpose (shortfall, transfer_out) and result (confirmed, failed, pending, no_answer).",
		}, []string{"bank", "purpose", "result"}),
		redemptionLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metric.RedemptionDuration,
			Help:    "Time the fund company took to answer a redemption (or the time given up waiting).",
			Buckets: LatencyBuckets,
		}, []string{"purpose"}),
		deadlineMisses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metric.DeadlineMisses,
			Help: "Requests answered 91 because the bank's deadline came first, by bank and by what was awaited: the fund company's confirmation (fund) or the ledger (ledger).",
		}, []string{"bank", "stage"}),
		lockWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    metric.LockWait,
			Help:    "Time spent waiting for a card's etcd lock, failures included.",
			Buckets: LatencyBuckets,
		}),
		ordersSettled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metric.OrdersSettled,
			Help: "Pending redemption orders settled after their request had been answered, by final state.",
		}, []string{"state"}),
		quotaRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metric.QuotaRejections,
			Help: "Debits declined 61 because the day's instant-redemption quota could not cover their shortfall.",
		}, []string{"bank"}),
		exceptions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metric.Exceptions,
			Help: "Messages the bank believes moved money that the switch did not post (kept for an operator), by bank and kind.",
		}, []string{"bank", "kind"}),
		groupSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    metric.CommitGroupSize,
			Help:    "Requests decided together in one ledger transaction (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
	}
	for _, st := range []string{ledger.OrderConfirmed, ledger.OrderFailed} {
		m.ordersSettled.WithLabelValues(st)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.ledgerDuration, m.redemptions, m.redemptionLatency,
			m.deadlineMisses, m.lockWait, m.ordersSettled, m.quotaRejections, m.exceptions, m.groupSize)
	}
	return m
}

// Settled counts a pending order settled after its request was answered.
func (p *Issuer) Settled(state string) { p.m.ordersSettled.WithLabelValues(state).Inc() }

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
