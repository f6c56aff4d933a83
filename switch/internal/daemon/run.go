package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/locks"
	"github.com/goldcard/goldcard/switch/internal/admin"
	"github.com/goldcard/goldcard/switch/internal/cli"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/issuer"
	"github.com/goldcard/goldcard/switch/internal/kek"
	"github.com/goldcard/goldcard/switch/internal/link"
)

// Options are how goldcard serve runs a switch: its flags.
type Options struct {
	// Listen is the built-in bank's address, Admin the admin API's
	// (empty: none), DB the PostgreSQL URL, DataDir the switch's local
	// state (the embedded etcd, the config center's identity).
	Listen, Admin, DB, DataDir string
	// AuthTimeout and SafetyMargin are the built-in bank's, HoldValidity
	// how long an authorisation hold lasts uncompleted.
	AuthTimeout, SafetyMargin, HoldValidity time.Duration
	// DBPool is the most PostgreSQL connections opened.
	DBPool int32
	// DrainTimeout bounds the wait for requests in flight at shutdown.
	DrainTimeout time.Duration
	// CommitWindow, CommitSize and CommitBatches say how requests are
	// committed many at a time (issuer.GroupCommit); a CommitSize of 0
	// commits each in a transaction of its own.
	CommitWindow  time.Duration
	CommitSize    int
	CommitBatches int

	// Etcd is the cluster to join, URLs separated by commas; empty runs
	// an embedded single-node etcd with its client on EtcdListen.
	Etcd, EtcdListen, EtcdPrefix string
	// LockTTL is the lease of the switch's etcd session.
	LockTTL time.Duration
	// FundURL is the fund company's HTTP gateway; empty: the simulated
	// fund, deciding in FundLatency and refusing FundFailRate of orders.
	FundURL      string
	FundLatency  time.Duration
	FundFailRate float64
	// Quota is the instant-redemption quota per card per day, in major
	// units with two decimals ("10000.00").
	Quota string
	// ConfigFile seeds an empty config center instead of the options
	// above; Instance names this switch in the config center.
	ConfigFile, Instance string
	// Capture, when set, records every bank link's messages.
	Capture *Capture
	// AdminAuth says who may use the admin API; its token is read from
	// AdminTokenFile, else from $GOLDCARD_ADMIN_TOKEN.
	AdminAuth      AdminAuth
	AdminTokenFile string
	// KEKFile holds the key-encryption keys (else $GOLDCARD_KEK). Without
	// either, a switch on its embedded etcd makes a development KEK in
	// DataDir; one joining a cluster refuses to start.
	KEKFile string
	Log     *slog.Logger
}

// AdminAuth says who may use the admin API.
type AdminAuth = admin.Auth

// Defaults are the options goldcard serve runs with unless told otherwise.
func Defaults() Options {
	host, err := os.Hostname()
	if err != nil {
		host = "goldcard"
	}
	return Options{
		Listen: config.DefaultListen, Admin: "127.0.0.1:8080", DB: cli.DefaultDB(), DataDir: "./var",
		AuthTimeout: config.DefaultAuthTimeout, SafetyMargin: config.DefaultSafetyMargin, HoldValidity: config.DefaultHoldValidity,
		DBPool: 32, DrainTimeout: 10 * time.Second,
		CommitWindow: issuer.DefaultCommitWindow, CommitSize: issuer.DefaultCommitSize, CommitBatches: issuer.DefaultCommitBatches,
		EtcdListen: "127.0.0.1:2379", EtcdPrefix: "/goldcard/", LockTTL: 5 * time.Second,
		FundLatency: 50 * time.Millisecond, Quota: "10000.00",
		Instance: fmt.Sprintf("%s-%d", host, os.Getpid()),
	}
}

// Run runs a switch until ctx ends, then drains it: the database is
// created and migrated if needed, the config center seeded if empty.
func Run(ctx context.Context, o Options) error {
	log := o.Log
	if o.CommitSize < 0 || o.CommitBatches < 0 || o.CommitWindow < 0 {
		return cli.UsageError{Err: errors.New("--commit-size, --commit-batches and --commit-window cannot be negative")}
	}
	seed, err := seedConfig(o)
	if err != nil {
		return cli.UsageError{Err: err}
	}
	if o.AdminAuth.Token, err = client.ReadToken(o.AdminTokenFile, "GOLDCARD_ADMIN_TOKEN"); err != nil {
		return cli.UsageError{Err: fmt.Errorf("--admin-token-file: %w", err)}
	}
	if err := o.AdminAuth.LoadOperators(); err != nil {
		return cli.UsageError{Err: err}
	}
	for _, p := range o.AdminAuth.Open {
		if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "/v1") {
			return cli.UsageError{Err: fmt.Errorf("--admin-open %q: name read-only paths such as /metrics, /healthz, /readyz", p)}
		}
	}
	if o.Admin != "" {
		if err := o.AdminAuth.Check(o.Admin); err != nil {
			return cli.UsageError{Err: err}
		}
	}
	dialects := link.NewDialects()
	snap, err := config.Build(0, seed, iso.BuiltinSpecs())
	if err == nil {
		err = snap.Validate(dialects.Check)
	}
	if err != nil {
		return cli.UsageError{Err: fmt.Errorf("config: %w", err)}
	}
	if err := os.MkdirAll(o.DataDir, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	keys, err := loadKEK(o)
	if err != nil {
		return err
	}
	// The config center never holds a MAC key in the clear: the seed's
	// are wrapped, and the switch runs on them as it will on its center's.
	if _, err := config.WrapKeys(seed, keys, false); err != nil {
		return cli.UsageError{Err: fmt.Errorf("config: %w", err)}
	}
	if snap, err = config.Build(0, seed, iso.BuiltinSpecs()); err == nil {
		err = snap.OpenKeys(keys)
	}
	if err != nil {
		return cli.UsageError{Err: fmt.Errorf("config: %w", err)}
	}

	etcd, closeEtcd, err := cli.ConnectEtcd(cli.Etcd{Endpoints: o.Etcd, Listen: o.EtcdListen, DataDir: o.DataDir}, log)
	if err != nil {
		return err
	}
	defer closeEtcd()
	// A KEK that does not open the config center's keys, or the
	// database's, stops the switch before it changes either.
	if err := centerKeysOpen(ctx, o, etcd, keys); err != nil {
		return err
	}
	pool, err := cli.OpenDatabase(ctx, o.DB, o.DBPool, log, func(ctx context.Context, pool *pgxpool.Pool) error {
		return ledger.CheckKEK(ctx, pool, keys)
	})
	if err != nil {
		return err
	}
	defer pool.Close()

	snap, cluster, err := configCenter(ctx, o, etcd, seed, snap, dialects, keys)
	if err != nil {
		return err
	}
	id, err := databaseIdentity(ctx, pool)
	if err != nil {
		return err
	}
	id.cluster, id.prefix = cluster, o.EtcdPrefix
	locker := locks.New(etcd, locks.Options{Prefix: o.EtcdPrefix, TTL: o.LockTTL, Log: log})
	defer locker.Close()

	election := locks.NewElection(etcd, locks.Options{Prefix: o.EtcdPrefix, TTL: o.LockTTL, Log: log}, "timer", o.Instance)
	srv, err := New(ctx, Parts{
		Config: config.NewStore(snap), Pool: pool, Log: log, Dialects: dialects, Admin: o.Admin, AdminAuth: o.AdminAuth,
		Locker: locker, Elect: election.Run, TaskClaim: 2 * o.LockTTL, Identity: id.digest(), Capture: o.Capture,
		Etcd: etcd, Prefix: o.EtcdPrefix, Instance: o.Instance, KEK: keys,
		GroupCommit: groupCommit(o),
	})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	log.Info("switch ready", "db", ledger.Redact(o.DB), "instance", o.Instance, "identity", id.digest())
	<-ctx.Done()
	log.Info("shutting down: answering requests in flight", "timeout", o.DrainTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), o.DrainTimeout)
	defer cancel()
	srv.Shutdown(dctx)
	log.Info("switch stopped")
	return nil
}

// configCenter learns which config center this is, seeds it if empty and
// reads its config, which is then the truth: a switch that cannot run on
// it does not start on something else. A config center that does not
// answer leaves the switch on snap until it is back.
func configCenter(ctx context.Context, o Options, etcd *clientv3.Client, seed map[string][]byte, snap *config.Snapshot, dialects *link.Dialects, keys config.KEK) (*config.Snapshot, uint64, error) {
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// Which config center this is, before anything else is asked of it:
	// if it does not answer, what follows does not wait for it again.
	cluster, err := clusterID(sctx, etcd, o.Etcd, o.EtcdPrefix, clusterCacheFile(o.DataDir))
	if err != nil {
		return nil, 0, err
	}
	wrote, err := config.Seed(sctx, etcd, o.EtcdPrefix, seed)
	if err == nil {
		if len(wrote) > 0 {
			o.Log.Info("config center seeded", "keys", wrote)
		}
		// MAC keys written in the clear before they were wrapped, if every
		// live switch holds this one's KEK.
		var (
			wrapped []string
			rev     int64
		)
		live, _, lerr := config.Instances(sctx, etcd, o.EtcdPrefix)
		if ok, who := config.Holds(live, keys.ID()); lerr == nil && ok {
			var werr error
			if wrapped, rev, werr = config.WrapStored(sctx, etcd, o.EtcdPrefix, keys, false); werr != nil {
				return nil, 0, fmt.Errorf("wrapping the config center's MAC keys: %w", werr)
			}
		} else if kvs, _, rerr := config.Read(sctx, etcd, o.EtcdPrefix); lerr == nil && rerr == nil {
			if _, clear := config.WrapKeys(kvs, nil, false); clear != nil {
				o.Log.Warn("MAC keys in the config center in the clear are left as they are: "+who, "kek", keys.ID())
			}
		}
		if len(wrapped) > 0 {
			o.Log.Warn("MAC keys in the config center were in the clear: wrapped under the KEK. Its history still holds them: "+
				"compact it (etcdctl compact REVISION --physical), rotate the keys with their banks, and treat earlier backups of etcd as holding them",
				"keys", wrapped, "kek", keys.ID(), "revision", rev)
		}
		kvs, rev, rerr := config.Read(sctx, etcd, o.EtcdPrefix)
		err = rerr
		if rerr == nil {
			loaded, berr := config.Build(rev, kvs, iso.BuiltinSpecs())
			if berr == nil {
				berr = loaded.Validate(dialects.Check)
			}
			if berr == nil {
				berr = loaded.OpenKeys(keys)
			}
			if berr != nil {
				return nil, 0, fmt.Errorf("the config center's config is invalid; fix it with goldcard config put/delete:\n%w", berr)
			}
			snap = loaded
		}
	}
	if err != nil {
		o.Log.Warn("config center unreachable: starting on the local config until it is back", "err", err)
	}
	return snap, cluster, nil
}

// centerKeysOpen checks that keys open every MAC key the config center
// holds wrapped, reading only; a config center that does not answer is
// left to configCenter.
func centerKeysOpen(ctx context.Context, o Options, etcd *clientv3.Client, keys config.KEK) error {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	kvs, rev, err := config.Read(rctx, etcd, o.EtcdPrefix)
	if err != nil {
		return nil
	}
	snap, err := config.Build(rev, kvs, iso.BuiltinSpecs())
	if err != nil {
		return nil // configCenter says what is wrong with it
	}
	for _, b := range snap.Banks {
		if b.MAC != nil && b.MAC.KeyWrapped == "" {
			b.MAC = nil // in the clear: wrapped by configCenter
		}
	}
	if err := snap.OpenKeys(keys); err != nil {
		return fmt.Errorf("the config center's MAC keys do not open under this switch's KEK %s: %w", keys.ID(), err)
	}
	return nil
}

// loadKEK is the switch's KEK: of --kek-file or $GOLDCARD_KEK, else, for
// a switch on its embedded etcd with its admin API on loopback (a
// developer's), the development KEK of the data directory.
func loadKEK(o Options) (*kek.Set, error) {
	keys, err := kek.Load(o.KEKFile)
	if !errors.Is(err, kek.ErrNone) {
		if err != nil {
			return nil, cli.UsageError{Err: err}
		}
		return keys, nil
	}
	if o.Etcd != "" {
		return nil, cli.UsageError{Err: fmt.Errorf("%w: a switch joining a cluster never makes its own (every switch needs the same KEKs)", kek.ErrNone)}
	}
	if a, err := net.ResolveTCPAddr("tcp", o.Admin); o.Admin != "" && (err != nil || !a.IP.IsLoopback()) {
		return nil, cli.UsageError{Err: fmt.Errorf("%w: a switch whose admin API other hosts reach (--admin %s) never makes its own", kek.ErrNone, o.Admin)}
	}
	keys, path, made, err := kek.Dev(o.DataDir)
	if err != nil {
		return nil, err
	}
	verb := "using"
	if made {
		verb = "made"
	}
	o.Log.Warn(verb+" a development KEK: card data is sealed under a key kept beside it; not for production (give --kek-file)",
		"path", path, "kek", keys.ID())
	return keys, nil
}

// seedConfig is the config the options (or ConfigFile) describe: what an
// empty config center is seeded with, and what the switch runs on until
// it has read the config center.
func seedConfig(o Options) (map[string][]byte, error) {
	if o.ConfigFile != "" {
		b, err := os.ReadFile(o.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		kvs, err := config.ParseFile(b)
		if err != nil {
			return nil, fmt.Errorf("--config %s: %w", o.ConfigFile, err)
		}
		return kvs, nil
	}
	bank := config.DefaultBank(o.Listen)
	bank.AuthTimeout, bank.SafetyMargin = config.Duration(o.AuthTimeout), config.Duration(o.SafetyMargin)
	snap := &config.Snapshot{
		Banks:  map[string]*config.Bank{bank.Code: bank},
		Limits: config.DefaultLimits(),
		Fund:   config.DefaultFund(),
		Sweep:  config.DefaultSweep(),
	}
	snap.Limits.HoldValidity = config.Duration(o.HoldValidity)
	quota, err := client.ParseAmount(o.Quota)
	if err != nil {
		return nil, fmt.Errorf("--quota: %w", err)
	}
	snap.Limits.RedemptionQuota = quota
	snap.Fund.SimulatorLatency, snap.Fund.SimulatorFailRate = config.Duration(o.FundLatency), o.FundFailRate
	if o.FundURL != "" {
		snap.Fund.Provider, snap.Fund.URL = config.FundGateway, o.FundURL
	}
	return snap.Values(), nil
}

// groupCommit is the issuer's group commit for o.
func groupCommit(o Options) *issuer.GroupCommit {
	size := o.CommitSize
	if size == 0 {
		size = -1 // each request on its own
	}
	return &issuer.GroupCommit{Window: o.CommitWindow, Size: size, Batches: o.CommitBatches}
}
