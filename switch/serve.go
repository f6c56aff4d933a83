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
	"github.com/goldcard/goldcard/switch/internal/admin"
	"github.com/goldcard/goldcard/switch/internal/daemon"
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
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error { return serve(c.Context(), c, f) },
	}
	fl := c.Flags()
	fl.StringVar(&f.listen, "listen", config.DefaultListen, "address the built-in bank connects to")
	fl.StringVar(&f.admin, "admin", "127.0.0.1:8080", "address of the admin API (/v1, /metrics, /healthz, /readyz)")
	fl.StringVar(&f.db, "db", defaultDB(), "PostgreSQL URL (default $GOLDCARD_DB); the database is created if missing")
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
	log, err := newLogger(c.ErrOrStderr(), f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	if f.capturePAN && f.capture == "" {
		return usageError{errors.New("--capture-pan needs --capture DIR")}
	}
	token, err := readToken(f.adminTokenFile, "GOLDCARD_ADMIN_TOKEN")
	if err != nil {
		return usageError{fmt.Errorf("--admin-token-file: %w", err)}
	}
	for _, p := range f.adminOpen {
		if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "/v1") {
			return usageError{fmt.Errorf("--admin-open %q: name read-only paths such as /metrics, /healthz, /readyz", p)}
		}
	}
	quota, err := parseAmount(f.quota)
	if err != nil {
		return usageError{fmt.Errorf("--quota: %w", err)}
	}
	o := daemon.Options{
		Listen: f.listen, Admin: f.admin, DB: f.db, DataDir: f.dataDir,
		AuthTimeout: f.authTimeout, SafetyMargin: f.safetyMargin, HoldValidity: f.holdValidity,
		DBPool: f.dbPool, DrainTimeout: f.drainTimeout,
		Etcd: f.etcd, EtcdListen: f.etcdListen, EtcdPrefix: f.etcdPrefix, LockTTL: f.lockTTL,
		FundURL: f.fundURL, FundLatency: f.fundLatency, FundFailRate: f.fundFailRate, Quota: quota,
		ConfigFile: f.configFile, Instance: f.instanceID,
		AdminAuth: admin.Auth{Token: token, CertFile: f.adminCert, KeyFile: f.adminKey, ClientCAFile: f.adminClientCA, Open: f.adminOpen},
		Log:       log,
	}
	if f.capture != "" {
		o.Capture = &daemon.Capture{Dir: f.capture, KeepPAN: f.capturePAN}
	}
	return usage(daemon.Run(ctx, o))
}

// usage makes the daemon's options errors usage errors (exit code 2).
func usage(err error) error {
	var oe daemon.OptionsError
	if errors.As(err, &oe) {
		return usageError{oe.Err}
	}
	return err
}

func newMigrateCommand() *cobra.Command {
	var db string
	c := &cobra.Command{
		Use:   "migrate",
		Short: "Create the database if missing and apply the ledger's schema migrations",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			log, _ := newLogger(c.ErrOrStderr(), "text", "info")
			pool, err := daemon.OpenDatabase(c.Context(), db, 2, log)
			if err != nil {
				return usage(err)
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
	c.Flags().StringVar(&db, "db", defaultDB(), "PostgreSQL URL (default $GOLDCARD_DB)")
	return c
}
