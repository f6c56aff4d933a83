package admin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/internal/issuer"
	"github.com/goldcard/goldcard/switch/internal/metric"
	"github.com/goldcard/goldcard/switch/internal/timer"
)

// Options are what the admin API is made of.
type Options struct {
	// Addr is the address to listen on.
	Addr string
	// Auth says who may use it.
	Auth   Auth
	Ledger *ledger.Ledger
	// Pool is the ledger's database: readiness and the timer's tasks.
	Pool   *pgxpool.Pool
	Config *config.Store
	// Status is what the instance reports to the config center (nil: it
	// follows none).
	Status func() config.Report
	// Issuer moves money out of cards' funds by hand.
	Issuer *issuer.Issuer
	// Timer runs a pending task now, on an operator's word.
	Timer *timer.Timer
	// Metrics is served on /metrics; Registerer takes the API's own.
	Metrics    prometheus.Gatherer
	Registerer prometheus.Registerer
	// Keys rotates and rewraps the ledger's keys (nil: GET /v1/keys and
	// its changes answer 404).
	Keys Keys
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	Log *slog.Logger
}

// Server is the admin API.
type Server struct {
	cfg     *config.Store
	ledger  *ledger.Ledger
	pool    *pgxpool.Pool
	status  func() config.Report
	issuer  *issuer.Issuer
	timer   *timer.Timer
	keys    Keys
	metrics prometheus.Gatherer
	now     func() time.Time
	log     *slog.Logger

	// reconTurns bounds the reconciliations running at once, and
	// reconUploads the files being taken for them.
	reconTurns, reconUploads chan struct{}

	auth Auth
	http *http.Server
	addr net.Addr
}

// New builds the admin API. Nothing listens until Start.
func New(o Options) *Server {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	s := &Server{cfg: o.Config, ledger: o.Ledger, pool: o.Pool, status: o.Status, issuer: o.Issuer,
		timer: o.Timer, keys: o.Keys, metrics: o.Metrics, now: now, log: o.Log, auth: o.Auth, reconTurns: make(chan struct{}, reconRunsAtOnce), reconUploads: make(chan struct{}, reconUploadsAtOnce)}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metric.AdminRefused,
		Help: "Admin API requests refused 401, by reason: no credentials (missing) or a wrong token (wrong).",
	}, []string{"reason"})
	for _, reason := range []string{refusedMissing, refusedWrong} {
		refused.WithLabelValues(reason)
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(refused)
		if o.Ledger != nil {
			o.Registerer.MustRegister(caseCollector{l: o.Ledger})
		}
	}
	s.http = &http.Server{Addr: o.Addr, Handler: newAdminGuard(o.Auth, refused, o.Log, s.handler()),
		ReadHeaderTimeout: 5 * time.Second}
	return s
}

// Start listens and serves in the background. An open API (no token, no
// client CA) on an address other hosts reach is refused.
func (s *Server) Start() error {
	tc, err := s.auth.tlsConfig()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.http.Addr)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	if err := s.auth.checkExposure(ln.Addr()); err != nil {
		ln.Close()
		return err
	}
	s.addr = ln.Addr()
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	go func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin API stopped", "err", err)
		}
	}()
	s.log.Info("admin API listening", "addr", ln.Addr().String(), "tls", tc != nil, "auth", s.auth.required())
	return nil
}

// Addr is the address the API is bound to (nil before Start).
func (s *Server) Addr() net.Addr { return s.addr }

// Shutdown stops the API, letting requests under way finish until ctx
// ends.
func (s *Server) Shutdown(ctx context.Context) { _ = s.http.Shutdown(ctx) }
