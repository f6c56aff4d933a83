package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/fund"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/internal/admin"
	"github.com/goldcard/goldcard/switch/internal/fixture"
	"github.com/goldcard/goldcard/switch/internal/issuer"
	"github.com/goldcard/goldcard/switch/internal/link"
	"github.com/goldcard/goldcard/switch/internal/timer"
)

// Switch is a running switch: the bank listeners, the issuer behind them,
// the timer's tasks and the admin API, over one ledger.
type Switch struct {
	cfg    *config.Store
	ledger *ledger.Ledger
	kek    ledger.KEK
	// etcd is the config center under prefix, or nil.
	etcd   *clientv3.Client
	prefix string
	pool   *pgxpool.Pool
	log    *slog.Logger
	now    func() time.Time
	m      *metrics

	issuer  *issuer.Issuer
	links   *link.Listeners
	fund    *switchableFund
	admin   *admin.Server // nil without an admin API
	watcher *config.Watcher
	dbProbe *dbProbe

	// timer runs the switch's one-shot tasks while this instance leads
	// the election elect stands in; stopBackground ends that and the
	// config watch.
	timer          *timer.Timer
	elect          func(ctx context.Context, lead func(ctx context.Context, token int64))
	base           context.Context
	identity       string
	stopBackground context.CancelFunc
	backgroundDone chan struct{}
	// stopWatch ends following the config center.
	stopWatch context.CancelFunc
	watchDone chan struct{}
	shutdown  sync.Once
	// cardBatch overrides how many cards a daily batch task covers (0:
	// cardBatch), for tests.
	cardBatch int
}

// Parts are everything a Switch is made of.
type Parts struct {
	Config *config.Store
	Pool   *pgxpool.Pool
	Log    *slog.Logger
	// Dialects builds the banks' wire formats; a cache of its own when
	// nil.
	Dialects *link.Dialects
	// Admin is the admin API's listen address; empty disables it.
	Admin string
	// AdminAuth says who may use it.
	AdminAuth admin.Auth
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Locker takes cards' etcd locks; it lets debits be covered from
	// cards' funds (the config names the fund company). Without it such
	// debits are declined.
	Locker issuer.CardLocker
	// Elect stands for the timer's leadership and calls lead while this
	// instance holds it (locks.Election.Run). Without it, this instance
	// fires no timer tasks.
	Elect func(ctx context.Context, lead func(ctx context.Context, token int64))
	// TaskClaim bounds a timer task's run before another leader may run
	// it again (default 10s).
	TaskClaim time.Duration
	// Identity is the digest of the config center and the database the
	// switch works on (see Identity): a bank port served by a switch of
	// another identity, or by a program that is not a switch, is refused.
	// Required: without it no bank listener opens.
	Identity string
	// Capture, when set, records every bank link's messages into its
	// directory.
	Capture *Capture
	// Etcd, when set, is the config center the switch follows (under
	// Prefix) and reports to, as Instance.
	Etcd     *clientv3.Client
	Prefix   string
	Instance string
	// KEK wraps the ledger's data keys and the banks' MAC keys. Required.
	KEK ledger.KEK
	// GroupCommit says how new requests are committed many at a time;
	// the issuer's defaults when nil. A Size below zero commits each
	// request in a transaction of its own.
	GroupCommit *issuer.GroupCommit
}

// Capture is where links are recorded, and whether card numbers are kept
// (else replaced by stand-ins).
type Capture struct {
	Dir     string
	KeepPAN bool
}

// New wires a switch. Nothing listens until Start.
func New(ctx context.Context, p Parts) (*Switch, error) {
	now := p.Now
	if now == nil {
		now = time.Now
	}
	if p.KEK == nil {
		return nil, errors.New("daemon: no KEK")
	}
	l, err := ledger.Open(ctx, p.Pool, p.KEK)
	if err != nil {
		return nil, err
	}
	s := &Switch{
		cfg: p.Config, ledger: l, pool: p.Pool, log: p.Log, now: now, kek: p.KEK, etcd: p.Etcd, prefix: p.Prefix,
		m:        newMetrics(),
		fund:     &switchableFund{},
		elect:    p.Elect,
		base:     context.WithoutCancel(ctx),
		identity: p.Identity,
	}
	snap := p.Config.Load()
	s.m.configRevision.Set(float64(snap.Revision))
	if _, err := s.fund.set(snap.Fund); err != nil {
		p.Log.Error("fund company of the config; using the simulator", "err", err)
		_, _ = s.fund.set(config.DefaultFund())
	}
	claim := p.TaskClaim
	if claim <= 0 {
		claim = 10 * time.Second
	}
	_ = s.useDataKey(snap) // warned; the ledger seals under the newest key it has
	s.timer = timer.New(timer.Options{Pool: p.Pool, Log: p.Log, Metrics: timerMetrics{s.m}, ClaimFor: claim, Now: now})
	io := issuer.Options{Ledger: l, Log: p.Log, Now: now, Registerer: s.m.reg, GroupCommit: p.GroupCommit}
	if io.GroupCommit == nil {
		io.GroupCommit = &issuer.GroupCommit{}
	} else if io.GroupCommit.Size < 0 {
		io.GroupCommit = nil
	}
	if p.Locker != nil {
		io.Fund, io.Locker, io.FollowUps = s.fund, p.Locker, followUps{s.timer}
	}
	s.issuer = issuer.New(io)
	s.registerTasks()

	var capture *fixture.Capture
	if c := p.Capture; c != nil {
		var err error
		if capture, err = fixture.NewCapture(c.Dir, c.KeepPAN, s.cardAtFirstSight, p.Log); err != nil {
			return nil, fmt.Errorf("--capture: %w", err)
		}
		p.Log.Warn("recording every bank link's messages: for test environments only", "dir", c.Dir, "card_numbers", map[bool]string{true: "kept", false: "replaced"}[c.KeepPAN])
	}
	dialects := p.Dialects
	if dialects == nil {
		dialects = link.NewDialects()
	}
	if p.Etcd != nil {
		s.watcher = &config.Watcher{
			Client: p.Etcd, Prefix: p.Prefix, Store: p.Config, Builtin: iso.BuiltinSpecs(), BuildDialect: dialects.Check, KEK: p.KEK, KEKs: kekIDs(p.KEK),
			ID: p.Instance, Version: version, Log: p.Log,
			Applied:  s.apply,
			Rejected: func(int64, error) { s.m.configRejected.Inc() },
		}
	}
	s.links = link.New(link.Options{
		Config: p.Config, Dialects: dialects, Identity: p.Identity, Base: s.base, Capture: capture,
		Warn: s.warn, Now: now, Log: p.Log, Registerer: s.m.reg,
	}, s.issuer)

	s.m.reg.MustRegister(newPoolCollector(p.Pool))
	s.dbProbe = newDBProbe(p.Pool)
	s.m.reg.MustRegister(healthGauges(s.dbProbe, p.Locker)...)
	if p.Admin != "" {
		ao := admin.Options{Addr: p.Admin, Auth: p.AdminAuth, Ledger: l, Pool: p.Pool, Config: p.Config,
			Issuer: s.issuer, Timer: s.timer, Keys: keyAdmin{s}, Metrics: s.m.reg, Registerer: s.m.reg, Now: now, Log: p.Log}
		if s.watcher != nil {
			ao.Status = s.watcher.Status
		}
		s.admin = admin.New(ao)
	}
	return s, nil
}

// cardAtFirstSight is a card as a capture records it: what it had
// available, as cash, and its fund position.
func (s *Switch) cardAtFirstSight(ctx context.Context, pan string) (fixture.Card, bool, error) {
	c, err := s.ledger.Card(ctx, pan, fund.Day(time.Now()))
	if errors.Is(err, ledger.ErrUnknownCard) {
		return fixture.Card{}, false, nil
	}
	if err != nil {
		return fixture.Card{}, false, err
	}
	card := fixture.Card{PAN: pan, Currency: c.Currency, Balance: max(c.Available(), 0), FundBalance: c.Fund}
	if c.Status != ledger.StatusActive {
		card.Status = c.Status
	}
	return card, true, nil
}

// Start opens the admin API and every enabled bank's listener, and
// starts following the config center and standing for the timer.
func (s *Switch) Start() error {
	if s.identity == "" {
		return link.ErrNoIdentity
	}
	if s.admin != nil {
		if err := s.admin.Start(); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(s.base)
	s.stopBackground, s.backgroundDone = cancel, make(chan struct{})
	s.dbProbe.probe(ctx)
	go func() {
		defer close(s.backgroundDone)
		var wg sync.WaitGroup
		wg.Go(func() { s.dbProbe.run(ctx) })
		wg.Go(func() { s.recheckClear(ctx) })
		if s.elect != nil {
			wg.Go(func() { s.elect(ctx, s.lead) })
		}
		wg.Wait()
	}()
	snap := s.cfg.Load()
	s.issuer.Banks(snap)
	for _, err := range s.links.UpdateKeys(snap) {
		s.log.Error("MAC key of the config", "err", err)
	}
	if err := s.links.Listen(snap); err != nil {
		s.Shutdown(context.Background())
		return err
	}
	if s.watcher != nil {
		wctx, stop := context.WithCancel(s.base)
		s.stopWatch, s.watchDone = stop, make(chan struct{})
		go func() {
			defer close(s.watchDone)
			s.watcher.Run(wctx)
		}()
	}
	return nil
}

// BankAddr returns the address a bank's listener is bound to.
func (s *Switch) BankAddr(code string) net.Addr { return s.links.BankAddr(code) }

// AdminAddr returns the address the admin API is bound to.
func (s *Switch) AdminAddr() net.Addr {
	if s.admin == nil {
		return nil
	}
	return s.admin.Addr()
}

// Registry is the switch's metrics registry.
func (s *Switch) Registry() *prometheus.Registry { return s.m.reg }

// Shutdown stops following the config center, stops accepting, lets
// requests in flight finish (until ctx ends), then closes every link, the
// timer's work and the admin API.
func (s *Switch) Shutdown(ctx context.Context) {
	s.shutdown.Do(func() {
		if s.stopWatch != nil {
			s.stopWatch()
			<-s.watchDone
		}
		s.links.Shutdown(ctx)
		if s.stopBackground != nil {
			s.stopBackground()
			<-s.backgroundDone
		}
		if s.admin != nil {
			s.admin.Shutdown(ctx)
		}
	})
}
