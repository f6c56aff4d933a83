package daemon

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/goldcard/goldcard/switch/internal/issuer"
	"github.com/goldcard/goldcard/switch/internal/metric"
)

// poolCollector exports the PostgreSQL pool's statistics at each scrape.
type poolCollector struct {
	pool                                 *pgxpool.Pool
	conns, max                           *prometheus.Desc
	acquires, waited, empty, canceled    *prometheus.Desc
	newConns, idleClosed, lifetimeClosed *prometheus.Desc
}

func newPoolCollector(pool *pgxpool.Pool) *poolCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &poolCollector{
		pool:           pool,
		conns:          d(metric.DBConnections, "PostgreSQL connections of the pool by state: idle, acquired (in use) or constructing.", "state"),
		max:            d(metric.DBMaxConnections, "Most connections the pool opens (--db-pool)."),
		acquires:       d(metric.DBAcquires, "Connections taken from the pool."),
		waited:         d(metric.DBAcquireWait, "Time spent taking connections from the pool, waits included."),
		empty:          d(metric.DBEmptyAcquires, "Takes that found no idle connection and had to wait for one."),
		canceled:       d(metric.DBCanceledAcquires, "Takes given up because their context ended (deadline) first."),
		newConns:       d(metric.DBConnects, "Connections opened to PostgreSQL."),
		idleClosed:     d(metric.DBIdleClosed, "Connections closed for being idle too long."),
		lifetimeClosed: d(metric.DBLifetimeClosed, "Connections closed at the end of their lifetime."),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.conns, c.max, c.acquires, c.waited, c.empty, c.canceled, c.newConns, c.idleClosed, c.lifetimeClosed} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.pool.Stat()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(c.conns, float64(s.IdleConns()), "idle")
	gauge(c.conns, float64(s.AcquiredConns()), "acquired")
	gauge(c.conns, float64(s.ConstructingConns()), "constructing")
	gauge(c.max, float64(s.MaxConns()))
	counter(c.acquires, float64(s.AcquireCount()))
	counter(c.waited, s.AcquireDuration().Seconds())
	counter(c.empty, float64(s.EmptyAcquireCount()))
	counter(c.canceled, float64(s.CanceledAcquireCount()))
	counter(c.newConns, float64(s.NewConnsCount()))
	counter(c.idleClosed, float64(s.MaxIdleDestroyCount()))
	counter(c.lifetimeClosed, float64(s.MaxLifetimeDestroyCount()))
}

// dbProbe checks PostgreSQL every probeEvery on a connection of its own,
// and counts the timer's pending and dead tasks while at it. A scrape reads
// what it found: it never waits for the database, and a pool busy with
// requests is not taken for a database that is down.
type dbProbe struct {
	cfg           *pgx.ConnConfig
	conn          *pgx.Conn // the probe's goroutine's only
	up            atomic.Bool
	pending, dead atomic.Int64
	exceptions    atomic.Int64 // open ones
}

const probeEvery = 2 * time.Second

func newDBProbe(pool *pgxpool.Pool) *dbProbe {
	return &dbProbe{cfg: pool.Config().ConnConfig.Copy()}
}

// run probes until ctx ends.
func (p *dbProbe) run(ctx context.Context) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if p.conn != nil {
				_ = p.conn.Close(context.Background())
			}
			return
		case <-t.C:
			p.probe(ctx)
		}
	}
}

func (p *dbProbe) probe(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, probeEvery)
	defer cancel()
	if p.conn == nil || p.conn.IsClosed() {
		c, err := pgx.ConnectConfig(ctx, p.cfg)
		if err != nil {
			p.up.Store(false)
			return
		}
		p.conn = c
	}
	var pending, dead, exceptions int64
	err := p.conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'dead'),
			(SELECT count(*) FROM exceptions WHERE resolved_at IS NULL)
		FROM timer_tasks WHERE state IN ('pending', 'dead')`).Scan(&pending, &dead, &exceptions)
	if err != nil {
		p.up.Store(false)
		_ = p.conn.Close(context.Background())
		p.conn = nil
		return
	}
	p.pending.Store(pending)
	p.dead.Store(dead)
	p.exceptions.Store(exceptions)
	p.up.Store(true)
}

// healthGauges are goldcard_postgres_up and the timer's task counts, from
// the database probe, and goldcard_etcd_up, from the card locker's own
// probe (absent without one).
func healthGauges(probe *dbProbe, locker issuer.CardLocker) []prometheus.Collector {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: metric.PostgresUp,
			Help: "1 if PostgreSQL answered the switch's last probe (every 2s, on a connection of its own).",
		}, func() float64 {
			if probe.up.Load() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: metric.TimerPending,
			Help: "Timer tasks waiting to run (due or not), as of the last database probe.",
		}, func() float64 { return float64(probe.pending.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: metric.TimerDead,
			Help: "Timer tasks parked as dead, waiting for an operator, as of the last database probe.",
		}, func() float64 { return float64(probe.dead.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: metric.ExceptionsOpen,
			Help: "Exceptions no operator has resolved yet (GET /v1/exceptions), as of the last database probe.",
		}, func() float64 { return float64(probe.exceptions.Load()) }),
	}
	if h, ok := locker.(interface{ Healthy() bool }); ok {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: metric.EtcdUp,
			Help: "1 if etcd answered the switch's last health probe (card locks and leadership need it).",
		}, func() float64 {
			if h.Healthy() {
				return 1
			}
			return 0
		}))
	}
	return cs
}
