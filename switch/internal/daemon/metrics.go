package daemon

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/goldcard/goldcard/switch/internal/metric"
)

// metrics are the running switch's own series, and the registry every
// part of the switch registers its series on.
type metrics struct {
	reg *prometheus.Registry

	holdsExpired prometheus.Counter

	timerLateness *prometheus.HistogramVec // kind
	timerRetries  *prometheus.CounterVec   // kind
	timerDead     *prometheus.CounterVec   // kind
	timerLeader   prometheus.Gauge
	leaderChanges prometheus.Counter

	configRevision prometheus.Gauge
	configApply    prometheus.Histogram
	configRejected prometheus.Counter
	resealed       prometheus.Counter
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		holdsExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metric.HoldsExpired,
			Help: "Authorisation holds released because their validity passed uncompleted.",
		}),
		timerLateness: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metric.TimerLateness,
			Help:    "How late timer tasks started after their due time, by kind.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .5, 1, 5, 30},
		}, []string{"kind"}),
		timerRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metric.TimerRetries,
			Help: "Timer tasks that failed and were scheduled to run again, by kind.",
		}, []string{"kind"}),
		timerDead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metric.TimerDeadTotal,
			Help: "Timer tasks parked as dead after their last attempt failed, by kind.",
		}, []string{"kind"}),
		timerLeader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: metric.TimerLeader,
			Help: "1 while this instance leads the timer (fires its tasks).",
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metric.TimerLeaderChanges,
			Help: "Times this instance became the timer's leader.",
		}),
		configRevision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: metric.ConfigRevision,
			Help: "etcd revision of the config this instance runs on.",
		}),
		configApply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    metric.ConfigApply,
			Help:    "Time from a config change's arrival from etcd to its being in effect.",
			Buckets: []float64{.0001, .0002, .0005, .001, .002, .005, .01, .05, .1},
		}),
		configRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metric.ConfigRejected,
			Help: "Config changes refused as invalid; the instance kept running on its config.",
		}),
		resealed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: metric.KeysResealed,
			Help: "Cards and requests sealed again under the data key in use (after a rotation, or sealed for the first time).",
		}),
	}
	reg.MustRegister(m.configRevision, m.configApply, m.configRejected, m.resealed, m.holdsExpired,
		m.timerLateness, m.timerRetries, m.timerDead, m.timerLeader, m.leaderChanges,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo())
	return m
}

// Set at build time with -ldflags "-X github.com/goldcard/goldcard/switch/internal/daemon.version=...".
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
		Name:        metric.BuildInfo,
		Help:        "Build of the running switch; always 1.",
		ConstLabels: prometheus.Labels{"version": version, "commit": c, "goversion": runtime.Version()},
	})
	g.Set(1)
	return g
}

// Version is the switch's build version.
func Version() string { return version }
