package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/fund"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/fixture"
	"github.com/goldcard/goldcard/switch/timer"
)

// Server is a running switch: bank listeners, the processor and the admin
// API over one ledger.
type Server struct {
	cfg     *config.Store
	macs    *macKeys
	ledger  *ledger.Ledger
	pool    *pgxpool.Pool
	proc    *processor
	metrics *metrics
	log     *slog.Logger

	// baseCtx parents every request's context. It is not cancelled by
	// shutdown: requests in flight are allowed to finish.
	baseCtx context.Context

	// identity is the digest of the config center and database this
	// switch works on: only switches of one identity share a bank port.
	identity string

	mu        sync.Mutex               // guards listeners, refused and closed
	listeners map[string]*bankListener // by address
	// refused are the listeners not opened because another holds their
	// port (see isRefusal), by address; they are not tried again until
	// the config changes.
	refused map[string]refusedListener
	closed  bool
	// retired counts listeners draining after a config change; retrying
	// is set while listeners that would not bind are being tried again.
	retired  sync.WaitGroup
	retrying atomic.Bool
	dialects *dialectCache
	fund     *switchableFund
	capture  *fixture.Capture // nil unless links are recorded

	admin     *http.Server
	adminAuth AdminAuth
	dbProbe   *dbProbe
	adminAddr net.Addr

	// watcher follows the config center (nil without one).
	watcher *config.Watcher

	// timer runs the switch's one-shot tasks while this instance leads
	// the election elect stands in; stopBackground ends that.
	timer          *timer.Timer
	elect          func(ctx context.Context, lead func(ctx context.Context, token int64))
	stopBackground context.CancelFunc
	backgroundDone chan struct{}
}

// ServerOptions are what a Server is made of.
type ServerOptions struct {
	Config *config.Store
	Pool   *pgxpool.Pool
	Log    *slog.Logger
	// Admin is the admin API's listen address; empty disables it.
	Admin string
	// AdminAuth says who may use it.
	AdminAuth AdminAuth
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Locker takes cards' etcd locks; it lets debits be covered from
	// cards' funds (the config names the fund company). Without it such
	// debits are declined.
	Locker cardLocker
	// Elect stands for the timer's leadership and calls lead while this
	// instance holds it (locks.Election.Run). Without it, this instance
	// fires no timer tasks.
	Elect func(ctx context.Context, lead func(ctx context.Context, token int64))
	// TaskClaim bounds a timer task's run before another leader may run
	// it again (default 10s).
	TaskClaim time.Duration
	// Identity is the digest of the config center and the database the
	// switch works on (identity.digest): a bank port served by a switch
	// of another identity, or by a program that is not a switch, is
	// refused. Required: without it no bank listener opens.
	Identity string
}

// NewServer wires a switch. Nothing listens until Start.
func NewServer(ctx context.Context, o ServerOptions) *Server {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	l := ledger.New(o.Pool)
	s := &Server{
		cfg:       o.Config,
		ledger:    l,
		pool:      o.Pool,
		metrics:   newMetrics(),
		log:       o.Log,
		baseCtx:   context.WithoutCancel(ctx),
		identity:  o.Identity,
		listeners: make(map[string]*bankListener),
		refused:   make(map[string]refusedListener),
		dialects:  newDialectCache(),
		fund:      &switchableFund{},
	}
	s.metrics.configRevision.Set(float64(o.Config.Load().Revision))
	s.macs = newMACKeys(now)
	for _, err := range s.macs.update(o.Config.Load()) {
		o.Log.Error("MAC key of the config", "err", err)
	}
	if _, err := s.fund.set(o.Config.Load().Fund); err != nil {
		o.Log.Error("fund company of the config; using the simulator", "err", err)
		_, _ = s.fund.set(config.DefaultFund())
	}
	s.proc = &processor{books: ledgerBooks{l: l, metrics: s.metrics}, now: now, log: o.Log, exceptions: s.metrics.exceptions}
	claim := o.TaskClaim
	if claim <= 0 {
		claim = 10 * time.Second
	}
	s.timer = timer.New(timer.Options{Pool: o.Pool, Log: o.Log, Metrics: timerMetrics{s.metrics}, ClaimFor: claim, Now: now})
	s.metrics.reg.MustRegister(
		newPoolCollector(o.Pool))
	s.dbProbe = newDBProbe(o.Pool)
	s.metrics.reg.MustRegister(healthGauges(s.dbProbe, o.Locker)...)
	s.elect = o.Elect
	s.registerTasks()
	if o.Locker != nil {
		s.proc.redeemer = &redeemer{ledger: l, provider: s.fund, locker: o.Locker, timer: s.timer, metrics: s.metrics, log: o.Log}
	}
	if o.Admin != "" {
		s.admin = &http.Server{Addr: o.Admin, Handler: newAdminGuard(o.AdminAuth, s.metrics.adminRefused, o.Log, s.adminHandler()),
			ReadHeaderTimeout: 5 * time.Second}
		s.adminAuth = o.AdminAuth
	}
	return s
}

// Capture records the traffic of every link opened from now on into dir,
// one fixture per connection; card numbers are replaced by stand-ins
// unless keepPAN is set.
func (s *Server) Capture(dir string, keepPAN bool) error {
	c, err := fixture.NewCapture(dir, keepPAN, s.cardAtFirstSight, s.log)
	if err != nil {
		return err
	}
	s.capture = c
	s.log.Warn("recording every bank link's messages: for test environments only", "dir", dir, "card_numbers", map[bool]string{true: "kept", false: "replaced"}[keepPAN])
	return nil
}

// cardAtFirstSight is a card as a capture records it: what it had
// available, as cash, and its fund position.
func (s *Server) cardAtFirstSight(ctx context.Context, pan string) (fixture.Card, bool, error) {
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

// Start opens the admin API and every enabled bank's listener.
func (s *Server) Start() error {
	if s.identity == "" {
		return errNoIdentity
	}
	if s.admin != nil {
		tc, err := s.adminAuth.tlsConfig()
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", s.admin.Addr)
		if err != nil {
			return fmt.Errorf("admin API: %w", err)
		}
		if err := s.adminAuth.checkExposure(ln.Addr()); err != nil {
			ln.Close()
			return err
		}
		s.adminAddr = ln.Addr()
		if tc != nil {
			ln = tls.NewListener(ln, tc)
		}
		go func() {
			if err := s.admin.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("admin API stopped", "err", err)
			}
		}()
		s.log.Info("admin API listening", "addr", ln.Addr().String(), "tls", tc != nil, "auth", s.adminAuth.required())
	}
	ctx, cancel := context.WithCancel(s.baseCtx)
	s.stopBackground, s.backgroundDone = cancel, make(chan struct{})
	s.dbProbe.probe(ctx)
	go func() {
		defer close(s.backgroundDone)
		var wg sync.WaitGroup
		wg.Go(func() { s.dbProbe.run(ctx) })
		if s.elect != nil {
			s.elect(ctx, s.lead)
		}
		wg.Wait()
	}()
	if err := s.reconcileListeners(s.cfg.Load(), false); err != nil {
		s.Shutdown(context.Background())
		return err
	}
	return nil
}

// errNoIdentity is a server built without ServerOptions.Identity.
var errNoIdentity = errors.New("server has no identity: it cannot tell which switches may share its bank ports")

// refusedListener is a listener refused for its port's holder, and why.
type refusedListener struct {
	key listenerKey
	err error
}

// reconcileListeners opens a listener for each address the snapshot's
// enabled banks use and drains those no longer wanted. A listener whose
// wire format or banks changed is replaced: the new one binds beside the
// old (SO_REUSEPORT) before the old stops accepting and drains. Trying
// again (again set) skips the listeners refused for their port's holder
// and reports their refusals as they were; a new config tries them anew.
//
// A bank moved to an address that does not open is still served where it
// was: its old listener stays until the new one opens.
func (s *Server) reconcileListeners(snap *config.Snapshot, again bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if !again {
		clear(s.refused)
	}
	want := listenerKeys(snap)
	var errs []error
	var retired []*bankListener
	unserved := map[string]bool{} // banks whose listener did not open
	for addr, key := range want {
		cur, ok := s.listeners[addr]
		if ok && cur.key == key {
			continue
		}
		if r, ok := s.refused[addr]; ok && r.key == key {
			errs = append(errs, r.err)
			markUnserved(unserved, key)
			continue
		}
		delete(s.refused, addr)
		bl, err := s.openListener(snap, key)
		if err != nil {
			if isRefusal(err) {
				s.refused[addr] = refusedListener{key: key, err: err}
			}
			errs = append(errs, err)
			markUnserved(unserved, key)
			continue
		}
		if ok {
			retired = append(retired, cur)
		}
		s.listeners[addr] = bl
	}
	for addr := range s.refused {
		if _, ok := want[addr]; !ok {
			delete(s.refused, addr)
		}
	}
	for addr, cur := range s.listeners {
		if _, ok := want[addr]; ok || servesAny(cur, unserved) {
			continue
		}
		retired = append(retired, cur)
		delete(s.listeners, addr)
	}
	for _, bl := range retired {
		s.log.Info("bank listener retired: draining its links", "bank", bl.label(), "addr", bl.ln.Addr().String())
		s.retired.Go(func() {
			ctx, cancel := context.WithTimeout(s.baseCtx, 30*time.Second)
			defer cancel()
			bl.shutdown(ctx)
			s.forgetLinks(bl.label())
		})
	}
	return errors.Join(errs...)
}

func markUnserved(unserved map[string]bool, key listenerKey) {
	for _, code := range strings.Split(key.banks, "+") {
		unserved[code] = true
	}
}

// servesAny says whether bl serves one of banks.
func servesAny(bl *bankListener, banks map[string]bool) bool {
	for _, code := range bl.codes {
		if banks[code] {
			return true
		}
	}
	return false
}

// forgetLinks drops the connection series of a retired listener's banks
// unless a listener still serves them: a bank taken out of the config is
// not a bank whose links are down.
func (s *Server) forgetLinks(label string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, bl := range s.listeners {
		if bl.label() == label {
			return
		}
	}
	for _, st := range []string{linkConnected, linkSignedOn, linkDraining} {
		s.metrics.connections.DeleteLabelValues(label, st)
	}
}

func (s *Server) openListener(snap *config.Snapshot, key listenerKey) (*bankListener, error) {
	b := snap.Banks[strings.Split(key.banks, "+")[0]]
	d, err := s.dialects.build(b.Dialect, snap.Dialects[b.Dialect])
	if err != nil {
		return nil, fmt.Errorf("bank %s: %w", b.Code, err)
	}
	h, err := iso.HeaderByName(b.Header)
	if err != nil {
		return nil, fmt.Errorf("bank %s: %w", b.Code, err)
	}
	bl, err := listenBanks(s, key, d, h, b.TLS)
	if err != nil {
		return nil, err
	}
	s.log.Info("bank listening", "bank", key.banks, "addr", bl.ln.Addr().String(), "dialect", b.Dialect, "header", h.Name(), "tls", b.TLS != nil)
	return bl, nil
}

// errClosed is a change to a server that is shutting down.
var errClosed = errors.New("server shutting down")

// BankAddr returns the address a bank's listener is bound to.
func (s *Server) BankAddr(code string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, bl := range s.listeners {
		for _, c := range bl.codes {
			if c == code {
				return bl.ln.Addr()
			}
		}
	}
	return nil
}

// AdminAddr returns the address the admin API is bound to.
func (s *Server) AdminAddr() net.Addr { return s.adminAddr }

// Shutdown stops accepting, lets requests in flight finish (until ctx
// ends), then closes every link and the admin API.
func (s *Server) Shutdown(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	ls := make([]*bankListener, 0, len(s.listeners))
	for _, bl := range s.listeners {
		ls = append(ls, bl)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, bl := range ls {
		wg.Go(func() { bl.shutdown(ctx) })
	}
	wg.Wait()
	s.retired.Wait()
	if s.stopBackground != nil {
		s.stopBackground()
		<-s.backgroundDone
		s.stopBackground = nil
	}
	if s.admin != nil {
		_ = s.admin.Shutdown(ctx)
	}
}

// observe counts and logs one answered request.
func (s *Server) observe(bank string, ex exchange, arrival time.Time) {
	elapsed := time.Since(arrival)
	mti := mtiLabel(ex.mti)
	proc := "none"
	attrs := []slog.Attr{slog.String("bank", bank), slog.String("mti", ex.mti)}
	if r := ex.req; r != nil {
		proc = procLabel(r.TxnType)
		attrs = append(attrs,
			slog.String("processing_code", r.Processing),
			slog.String("pan", iso.MaskPAN(r.PAN)),
			slog.String("stan", r.STAN),
			slog.String("rrn", r.RRN),
			slog.Int64("amount", r.Amount))
	}
	s.metrics.requests.WithLabelValues(bank, mti, proc, ex.code).Inc()
	switch {
	case errors.Is(ex.err, errOverQuota):
		s.metrics.quotaRejections.WithLabelValues(bank).Inc()
	case ex.code != rcUnavailable:
	case errors.Is(ex.err, errDeadline):
		s.metrics.deadlineMisses.WithLabelValues(bank, "fund").Inc()
	case errors.Is(ex.err, context.DeadlineExceeded):
		s.metrics.deadlineMisses.WithLabelValues(bank, "ledger").Inc()
	}
	s.metrics.latency.WithLabelValues(bank, mti).Observe(elapsed.Seconds())
	attrs = append(attrs, slog.String("response_code", ex.code), slog.Duration("latency", elapsed))
	if ex.replayed {
		attrs = append(attrs, slog.Bool("replayed", true))
	}
	if ex.joined {
		attrs = append(attrs, slog.Bool("joined", true)) // waited for a copy being decided
	}
	if ex.lost {
		attrs = append(attrs, slog.Bool("lost", true))
	}
	if ex.order != "" {
		attrs = append(attrs, slog.String("order", ex.order))
	}
	if ex.err != nil && ex.code != rcApproved {
		attrs = append(attrs, slog.String("reason", ex.err.Error()))
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}
