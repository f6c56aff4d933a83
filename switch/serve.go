package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"

	"github.com/goldcard/goldcard/switch/internal/cli"
	"github.com/goldcard/goldcard/switch/internal/daemon"
)

// serveFlags are serve's flags: the daemon's options, and how it logs.
type serveFlags struct {
	daemon.Options
	logFormat, logLevel string
	capture             string
	capturePAN          bool
}

func newServeCommand() *cobra.Command {
	f := serveFlags{Options: daemon.Defaults()}
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
	fl, o := c.Flags(), &f.Options
	fl.StringVar(&o.Listen, "listen", o.Listen, "address the built-in bank connects to")
	fl.StringVar(&o.Admin, "admin", o.Admin, "address of the admin API (/v1, /metrics, /healthz, /readyz)")
	fl.StringVar(&o.DB, "db", o.DB, "PostgreSQL URL (default $GOLDCARD_DB); the database is created if missing")
	fl.StringVar(&o.DataDir, "data-dir", o.DataDir, "directory for the switch's local state")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.DurationVar(&o.AuthTimeout, "auth-timeout", o.AuthTimeout, "how long the built-in bank waits for an answer")
	fl.DurationVar(&o.SafetyMargin, "safety-margin", o.SafetyMargin, "part of --auth-timeout kept back for the way home")
	fl.DurationVar(&o.HoldValidity, "hold-validity", o.HoldValidity, "how long an authorisation hold lasts uncompleted")
	fl.Int32Var(&o.DBPool, "db-pool", o.DBPool, "most PostgreSQL connections the switch opens")
	fl.DurationVar(&o.DrainTimeout, "drain-timeout", o.DrainTimeout, "longest wait for requests in flight at shutdown")
	fl.DurationVar(&o.CommitWindow, "commit-window", o.CommitWindow, "longest a group of requests waits for more before it commits, while other groups are committing")
	fl.IntVar(&o.CommitSize, "commit-size", o.CommitSize, "most requests committed in one ledger transaction (0: each in its own)")
	fl.IntVar(&o.CommitBatches, "commit-batches", o.CommitBatches, "most group commits in flight at once")
	fl.StringVar(&o.Etcd, "etcd", "", "etcd cluster to join, as URLs separated by commas (default: run an embedded single-node etcd)")
	fl.StringVar(&o.EtcdListen, "etcd-listen", o.EtcdListen, "client address of the embedded etcd, for other instances and the CLI")
	fl.StringVar(&o.EtcdPrefix, "etcd-prefix", o.EtcdPrefix, "prefix of every etcd key the switch uses")
	fl.DurationVar(&o.LockTTL, "lock-ttl", o.LockTTL, "lease of the switch's etcd session: how long a crashed switch's card locks outlive it")
	fl.StringVar(&o.FundURL, "fund-url", "", "HTTP gateway of the fund company (default: the built-in simulated fund)")
	fl.DurationVar(&o.FundLatency, "fund-latency", o.FundLatency, "simulated fund: time to decide a redemption")
	fl.Float64Var(&o.FundFailRate, "fund-fail-rate", 0, "simulated fund: share of redemptions refused, 0 to 1")
	fl.StringVar(&o.Quota, "quota", o.Quota, "instant-redemption quota per card per day (Asia/Shanghai days)")
	fl.StringVar(&o.ConfigFile, "config", "", "config file (YAML) to seed an empty config center with, instead of the flags above")
	fl.StringVar(&o.Instance, "instance-id", o.Instance, "name of this instance in the config center")
	fl.StringVar(&o.KEKFile, "kek-file", "", "file of the key-encryption keys card data's keys are wrapped under, the current one first (default $GOLDCARD_KEK; without either, a switch on its embedded etcd makes a development KEK in --data-dir)")
	fl.StringVar(&o.AdminTokenFile, "admin-token-file", "", "file holding the admin API's bearer token (default $GOLDCARD_ADMIN_TOKEN); required, or --admin-client-ca, when --admin is not a loopback address")
	fl.StringVar(&o.AdminAuth.OperatorsFile, "admin-operators", "", "file of the admin API's operators, NAME:SHA256 of each one's token a line: what each does is recorded under their name")
	fl.StringVar(&o.AdminAuth.CertFile, "admin-tls-cert", "", "serve the admin API over HTTPS with this certificate (PEM)")
	fl.StringVar(&o.AdminAuth.KeyFile, "admin-tls-key", "", "key of --admin-tls-cert (PEM)")
	fl.StringVar(&o.AdminAuth.ClientCAFile, "admin-client-ca", "", "accept admin API clients with a certificate issued by this CA (PEM), as a token holder")
	fl.StringSliceVar(&o.AdminAuth.Open, "admin-open", nil, "paths readable without credentials, e.g. /metrics,/healthz,/readyz")
	fl.StringVar(&f.capture, "capture", "", "record every bank link's messages into this directory as replayable fixtures (test environments only)")
	fl.BoolVar(&f.capturePAN, "capture-pan", false, "with --capture: keep card numbers as they are instead of stand-ins")
	return c
}

func serve(ctx context.Context, c *cobra.Command, f serveFlags) error {
	log, err := cli.NewLogger(c.ErrOrStderr(), f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	if f.capturePAN && f.capture == "" {
		return cli.UsageError{Err: errors.New("--capture-pan needs --capture DIR")}
	}
	o := f.Options
	o.Log = log
	if f.capture != "" {
		o.Capture = &daemon.Capture{Dir: f.capture, KeepPAN: f.capturePAN}
	}
	return daemon.Run(ctx, o)
}
