package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/locks"
	"github.com/goldcard/goldcard/switch/internal/cli"
	"github.com/goldcard/goldcard/switch/internal/client"
)

type serveFlags struct {
	listen, admin, db, dataDir string
	logFormat, logLevel        string
	authTimeout, safetyMargin  time.Duration
	holdValidity               time.Duration
	dbPool                     int32
	drainTimeout               time.Duration

	etcd, etcdListen, etcdPrefix string
	lockTTL                      time.Duration
	fundURL                      string
	fundLatency                  time.Duration
	fundFailRate                 float64
	quota                        string
	configFile, instanceID       string
	capture                      string
	capturePAN                   bool

	adminTokenFile, adminCert, adminKey, adminClientCA string
	adminOpen                                          []string
}

func newServeCommand() *cobra.Command {
	var f serveFlags
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the switch",
		Long: `Run the switch: answer banks' ISO 8583 messages and serve the admin API on
--admin. The database is created and migrated if needed.

Banks, dialects, limits and the fund company come from the config center in
etcd (see goldcard config) and changes there take effect at once. When the
config center is empty it is seeded from --config's file or, without one, from
the flags below: the built-in bank "default" on --listen (ISO 8583:1987 ASCII,
2-byte binary length header), --auth-timeout, --quota, --fund-url...

On SIGTERM or SIGINT the switch stops accepting, answers the requests in
flight, then exits.`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return serve(c.Context(), c, f) },
	}
	fl := c.Flags()
	fl.StringVar(&f.listen, "listen", config.DefaultListen, "address the built-in bank connects to")
	fl.StringVar(&f.admin, "admin", "127.0.0.1:8080", "address of the admin API (/v1, /metrics, /healthz, /readyz)")
	fl.StringVar(&f.db, "db", cli.DefaultDB(), "PostgreSQL URL (default $GOLDCARD_DB); the database is created if missing")
	fl.StringVar(&f.dataDir, "data-dir", "./var", "directory for the switch's local state")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.DurationVar(&f.authTimeout, "auth-timeout", config.DefaultAuthTimeout, "how long the built-in bank waits for an answer")
	fl.DurationVar(&f.safetyMargin, "safety-margin", config.DefaultSafetyMargin, "part of --auth-timeout kept back for the way home")
	fl.DurationVar(&f.holdValidity, "hold-validity", config.DefaultHoldValidity, "how long an authorisation hold lasts uncompleted")
	fl.Int32Var(&f.dbPool, "db-pool", 32, "most PostgreSQL connections the switch opens")
	fl.DurationVar(&f.drainTimeout, "drain-timeout", 10*time.Second, "longest wait for requests in flight at shutdown")
	fl.StringVar(&f.etcd, "etcd", "", "etcd cluster to join, as URLs separated by commas (default: run an embedded single-node etcd)")
	fl.StringVar(&f.etcdListen, "etcd-listen", "127.0.0.1:2379", "client address of the embedded etcd, for other instances and the CLI")
	fl.StringVar(&f.etcdPrefix, "etcd-prefix", "/goldcard/", "prefix of every etcd key the switch uses")
	fl.DurationVar(&f.lockTTL, "lock-ttl", 5*time.Second, "lease of the switch's etcd session: how long a crashed switch's card locks outlive it")
	fl.StringVar(&f.fundURL, "fund-url", "", "HTTP gateway of the fund company (default: the built-in simulated fund)")
	fl.DurationVar(&f.fundLatency, "fund-latency", 50*time.Millisecond, "simulated fund: time to decide a redemption")
	fl.Float64Var(&f.fundFailRate, "fund-fail-rate", 0, "simulated fund: share of redemptions refused, 0 to 1")
	fl.StringVar(&f.quota, "quota", "10000.00", "instant-redemption quota per card per day (Asia/Shanghai days)")
	fl.StringVar(&f.configFile, "config", "", "config file (YAML) to seed an empty config center with, instead of the flags above")
	fl.StringVar(&f.instanceID, "instance-id", defaultInstanceID(), "name of this instance in the config center")
	fl.StringVar(&f.adminTokenFile, "admin-token-file", "", "file holding the admin API's bearer token (default $GOLDCARD_ADMIN_TOKEN); required, or --admin-client-ca, when --admin is not a loopback address")
	fl.StringVar(&f.adminCert, "admin-tls-cert", "", "serve the admin API over HTTPS with this certificate (PEM)")
	fl.StringVar(&f.adminKey, "admin-tls-key", "", "key of --admin-tls-cert (PEM)")
	fl.StringVar(&f.adminClientCA, "admin-client-ca", "", "accept admin API clients with a certificate issued by this CA (PEM), as a token holder")
	fl.StringSliceVar(&f.adminOpen, "admin-open", nil, "paths readable without credentials, e.g. /metrics,/healthz,/readyz")
	fl.StringVar(&f.capture, "capture", "", "record every bank link's messages into this directory as replayable fixtures (test environments only)")
	fl.BoolVar(&f.capturePAN, "capture-pan", false, "with --capture: keep card numbers as they are instead of stand-ins")
	return c
}

func defaultInstanceID() string {
	host, err := os.Hostname()
	if err != nil {
		host = "goldcard"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

func serve(ctx context.Context, c *cobra.Command, f serveFlags) error {
	log, err := cli.NewLogger(c.ErrOrStderr(), f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	if f.capturePAN && f.capture == "" {
		return cli.UsageError{Err: errors.New("--capture-pan needs --capture DIR")}
	}
	seed, err := seedConfig(f)
	if err != nil {
		return cli.UsageError{Err: err}
	}
	token, err := client.ReadToken(f.adminTokenFile, "GOLDCARD_ADMIN_TOKEN")
	if err != nil {
		return cli.UsageError{Err: fmt.Errorf("--admin-token-file: %w", err)}
	}
	auth := AdminAuth{Token: token, CertFile: f.adminCert, KeyFile: f.adminKey, ClientCAFile: f.adminClientCA, Open: f.adminOpen}
	for _, p := range f.adminOpen {
		if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "/v1") {
			return cli.UsageError{Err: fmt.Errorf("--admin-open %q: name read-only paths such as /metrics, /healthz, /readyz", p)}
		}
	}
	if f.admin != "" {
		if err := auth.checkAddress(f.admin); err != nil {
			return cli.UsageError{Err: err}
		}
		if _, err := auth.tlsConfig(); err != nil {
			return cli.UsageError{Err: err}
		}
	}
	dialects := newDialectCache()
	snap, err := config.Build(0, seed, builtinDialects())
	if err == nil {
		err = snap.Validate(dialects.check)
	}
	if err != nil {
		return cli.UsageError{Err: fmt.Errorf("config: %w", err)}
	}
	if err := os.MkdirAll(f.dataDir, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}

	pool, err := cli.OpenDatabase(ctx, f.db, f.dbPool, log)
	if err != nil {
		return err
	}
	defer pool.Close()

	etcd, closeEtcd, err := cli.ConnectEtcd(cli.Etcd{Endpoints: f.etcd, Listen: f.etcdListen, DataDir: f.dataDir}, log)
	if err != nil {
		return err
	}
	defer closeEtcd()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	// Which config center this is, before anything else is asked of it:
	// if it does not answer, what follows does not wait for it again.
	cluster, err := clusterID(sctx, etcd, f.etcd, f.etcdPrefix, clusterCacheFile(f.dataDir))
	if err != nil {
		cancel()
		return err
	}
	wrote, err := config.Seed(sctx, etcd, f.etcdPrefix, seed)
	if err == nil {
		if len(wrote) > 0 {
			log.Info("config center seeded", "keys", wrote)
		}
		kvs, rev, rerr := config.Read(sctx, etcd, f.etcdPrefix)
		err = rerr
		if rerr == nil {
			// etcd answered: its config is the truth, and a switch that
			// cannot run on it does not start on something else.
			loaded, berr := config.Build(rev, kvs, builtinDialects())
			if berr == nil {
				berr = loaded.Validate(dialects.check)
			}
			if berr != nil {
				cancel()
				return fmt.Errorf("the config center's config is invalid; fix it with goldcard config put/delete:\n%w", berr)
			}
			snap = loaded
		}
	}
	cancel()
	if err != nil {
		log.Warn("config center unreachable: starting on the local config until it is back", "err", err)
	}
	id, err := databaseIdentity(ctx, pool)
	if err != nil {
		return err
	}
	id.cluster, id.prefix = cluster, f.etcdPrefix
	locker := locks.New(etcd, locks.Options{Prefix: f.etcdPrefix, TTL: f.lockTTL, Log: log})
	defer locker.Close()

	store := config.NewStore(snap)
	election := locks.NewElection(etcd, locks.Options{Prefix: f.etcdPrefix, TTL: f.lockTTL, Log: log}, "timer", f.instanceID)
	srv := NewServer(ctx, ServerOptions{
		Config: store, Pool: pool, Log: log, Admin: f.admin, AdminAuth: auth, Locker: locker,
		Elect: election.Run, TaskClaim: 2 * f.lockTTL, Identity: id.digest(),
	})
	srv.dialects = dialects
	if f.capture != "" {
		if err := srv.Capture(f.capture, f.capturePAN); err != nil {
			return fmt.Errorf("--capture: %w", err)
		}
	}
	watcher := &config.Watcher{
		Client: etcd, Prefix: f.etcdPrefix, Store: store, Builtin: builtinDialects(), BuildDialect: dialects.check,
		ID: f.instanceID, Version: version, Log: log,
		Applied:  srv.applyConfig,
		Rejected: func(int64, error) { srv.metrics.configRejected.Inc() },
	}
	srv.watcher = watcher
	if err := srv.Start(); err != nil {
		return err
	}
	wctx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); watcher.Run(wctx) }()

	log.Info("switch ready", "db", ledger.Redact(f.db), "instance", f.instanceID, "identity", id.digest())
	<-ctx.Done()
	log.Info("shutting down: answering requests in flight", "timeout", f.drainTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), f.drainTimeout)
	defer cancel()
	stopWatch()
	<-watchDone
	srv.Shutdown(dctx)
	log.Info("switch stopped")
	return nil
}

// seedConfig is the config the flags (or --config's file) describe: what
// an empty config center is seeded with, and what the switch runs on
// until it has read the config center.
func seedConfig(f serveFlags) (map[string][]byte, error) {
	if f.configFile != "" {
		b, err := os.ReadFile(f.configFile)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		kvs, err := config.ParseFile(b)
		if err != nil {
			return nil, fmt.Errorf("--config %s: %w", f.configFile, err)
		}
		return kvs, nil
	}
	bank := config.DefaultBank(f.listen)
	bank.AuthTimeout, bank.SafetyMargin = config.Duration(f.authTimeout), config.Duration(f.safetyMargin)
	snap := &config.Snapshot{
		Banks:  map[string]*config.Bank{bank.Code: bank},
		Limits: config.DefaultLimits(),
		Fund:   config.DefaultFund(),
		Sweep:  config.DefaultSweep(),
	}
	snap.Limits.HoldValidity = config.Duration(f.holdValidity)
	var err error
	if snap.Limits.RedemptionQuota, err = client.ParseAmount(f.quota); err != nil {
		return nil, fmt.Errorf("--quota: %w", err)
	}
	snap.Fund.SimulatorLatency, snap.Fund.SimulatorFailRate = config.Duration(f.fundLatency), f.fundFailRate
	if f.fundURL != "" {
		snap.Fund.Provider, snap.Fund.URL = config.FundGateway, f.fundURL
	}
	return snap.Values(), nil
}

func newMigrateCommand() *cobra.Command {
	var db string
	c := &cobra.Command{
		Use:   "migrate",
		Short: "Create the database if missing and apply the ledger's schema migrations",
		Args:  cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			log, _ := cli.NewLogger(c.ErrOrStderr(), "text", "info")
			pool, err := cli.OpenDatabase(c.Context(), db, 2, log)
			if err != nil {
				return err
			}
			defer pool.Close()
			applied, newest, err := ledger.SchemaVersion(c.Context(), pool)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "schema at version %d of %d\n", applied, newest)
			return nil
		},
	}
	c.Flags().StringVar(&db, "db", cli.DefaultDB(), "PostgreSQL URL (default $GOLDCARD_DB)")
	return c
}
