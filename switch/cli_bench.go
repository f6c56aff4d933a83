package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	connection "github.com/moov-io/iso8583-connection"
	"github.com/spf13/cobra"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/locks"
	"github.com/goldcard/goldcard/switch/internal/cli"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/timer"
)

type benchFlags struct {
	addr, admin string
	cards       int
	conns       int
	concurrency string
	duration    time.Duration
	mti         string
	asJSON      bool
	dialect     string
	header      string
	prefix      string
	shortfall   bool
	tls         client.TLS
}

func newBenchCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure a running switch",
	}
	c.AddCommand(newBenchAuthCommand(), newBenchConfigCommand(), newBenchTimerCommand())
	return c
}

func newBenchAuthCommand() *cobra.Command {
	var f benchFlags
	c := &cobra.Command{
		Use:   "auth",
		Short: "Send approved debits to a running switch and report throughput and latency",
		Long: `Send approved debits to a running switch, as a bank would, and report
debits per second and latency percentiles for each concurrency level.

Cards are issued through the admin API with enough balance for the run; each
request debits 0.01 from a random card. With --shortfall the cards hold only
fund shares, so every debit is covered by a redemption from the fund. Every
answer that is not 00 counts as an error.`,
		Example: "  goldcard bench auth --addr 127.0.0.1:8583 --concurrency 8,64 --duration 10s",
		Args:    cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			levels, err := parseLevels(f.concurrency)
			if err != nil {
				return cli.UsageError{Err: err}
			}
			return runBench(c.Context(), c.OutOrStdout(), c.ErrOrStderr(), f, levels)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8583", "bank listener of the switch")
	fl.StringVar(&f.admin, "admin", "http://127.0.0.1:8080", "admin API of the switch, to issue the cards")
	fl.IntVar(&f.cards, "cards", 1000, "cards to spread the debits over")
	fl.IntVar(&f.conns, "conns", 4, "bank connections to open")
	fl.StringVar(&f.concurrency, "concurrency", "8,64", "requests in flight, one run per comma-separated level")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "length of each run")
	fl.StringVar(&f.mti, "mti", "0200", "0200 (posted purchase) or 0100 (authorisation hold)")
	fl.BoolVar(&f.asJSON, "json", false, "print results as JSON")
	fl.StringVar(&f.dialect, "dialect", iso.DefaultDialect, "dialect of the bank listener")
	fl.StringVar(&f.header, "header", iso.HeaderBinary2, "length header of the bank listener")
	fl.StringVar(&f.prefix, "pan-prefix", "", "first digits of the cards' PANs (random when empty)")
	fl.BoolVar(&f.shortfall, "shortfall", false, "issue cards with an empty cash account and a large fund, so every debit redeems from the fund")
	f.tls.AddFlags(c)
	return c
}

func parseLevels(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--concurrency %q: want positive numbers separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// benchResult is one run's figures.
type benchResult struct {
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"per_second"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	Maxms       float64 `json:"max_ms"`
}

func runBench(ctx context.Context, stdout, stderr io.Writer, f benchFlags, levels []int) error {
	if f.mti != "0200" && f.mti != "0100" {
		return cli.UsageError{Err: fmt.Errorf("--mti %q: want 0200 or 0100", f.mti)}
	}
	d, err := iso.Builtin(f.dialect)
	if err != nil {
		return cli.UsageError{Err: err}
	}
	h, err := iso.HeaderByName(f.header)
	if err != nil {
		return cli.UsageError{Err: err}
	}
	tlsConf, err := f.tls.Config()
	if err != nil {
		return cli.UsageError{Err: err}
	}
	pans, err := issueBenchCards(ctx, f)
	if err != nil {
		return err
	}
	conns := make([]*connection.Connection, f.conns)
	for i := range conns {
		if conns[i], err = client.DialBank(ctx, f.addr, d, h, client.WithTLS(tlsConf)); err != nil {
			return err
		}
		defer conns[i].Close()
	}
	var stan atomic.Int64
	var results []benchResult
	for _, n := range levels {
		fmt.Fprintf(stderr, "running %d in flight for %s...\n", n, f.duration)
		r := benchLevel(ctx, stderr, f, d, conns, pans, n, &stan)
		results = append(results, r)
		if ctx.Err() != nil {
			break
		}
	}
	if f.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	fmt.Fprintf(stdout, "%-12s %10s %8s %10s %9s %9s %9s\n", "concurrency", "requests", "errors", "debits/s", "p50 ms", "p99 ms", "max ms")
	for _, r := range results {
		fmt.Fprintf(stdout, "%-12d %10d %8d %10.0f %9.2f %9.2f %9.2f\n", r.Concurrency, r.Requests, r.Errors, r.PerSecond, r.P50ms, r.P99ms, r.Maxms)
	}
	return nil
}

func issueBenchCards(ctx context.Context, f benchFlags) ([]string, error) {
	prefix := f.prefix
	if prefix == "" {
		prefix = fmt.Sprintf("9%05d", rand.IntN(100000))
	}
	if len(prefix) > 9 {
		return nil, cli.UsageError{Err: errors.New("--pan-prefix: at most 9 digits")}
	}
	pans := make([]string, f.cards)
	for i := range pans {
		pans[i] = fmt.Sprintf("%s%0*d", prefix, 16-len(prefix), i)
		body := map[string]any{"pan": pans[i], "currency": "156", "balance": 1_000_000_000}
		if f.shortfall {
			body = map[string]any{"pan": pans[i], "currency": "156", "fund_balance": 1_000_000_000}
		}
		raw, status, err := client.Admin(ctx, f.admin, http.MethodPost, "/v1/cards", body)
		if err != nil {
			return nil, err
		}
		if status != http.StatusCreated && status != http.StatusConflict {
			return nil, fmt.Errorf("issuing bench cards: HTTP %d: %s", status, raw)
		}
	}
	return pans, nil
}

func benchLevel(ctx context.Context, stderr io.Writer, f benchFlags, d *iso.Dialect, conns []*connection.Connection, pans []string, n int, stan *atomic.Int64) benchResult {
	ctx, cancel := context.WithTimeout(ctx, f.duration)
	defer cancel()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		errs      int
		wg        sync.WaitGroup
	)
	var done atomic.Int64
	start := time.Now()
	runID := rand.IntN(10000)
	stopProgress := cli.Progress(stderr, &done, start, "requests")
	for w := range n {
		wg.Go(func() {
			var local []time.Duration
			localErrs := 0
			conn := conns[w%len(conns)]
			for ctx.Err() == nil {
				s := stan.Add(1)
				now := time.Now()
				// DE37 starts with this run's number, so that a run on a
				// ledger that holds an earlier one repeats none of its keys.
				fields := map[int]string{
					2: pans[rand.IntN(len(pans))], 3: "000000", 4: "000000000001",
					7: now.UTC().Format("0102150405"), 11: fmt.Sprintf("%06d", s%1000000),
					12: now.Format("150405"), 13: now.Format("0102"),
					32: "999", 37: fmt.Sprintf("%04d%08d", runID, s%100000000), 41: fmt.Sprintf("B%07d", w), 49: "156",
				}
				m, _ := client.NewMessage(d, f.mti, fields)
				t0 := time.Now()
				resp, err := conn.Send(m)
				el := time.Since(t0)
				done.Add(1)
				if err != nil {
					localErrs++
					continue
				}
				if rc, _ := resp.GetString(39); rc != "00" {
					localErrs++
					continue
				}
				local = append(local, el)
			}
			mu.Lock()
			latencies = append(latencies, local...)
			errs += localErrs
			mu.Unlock()
		})
	}
	wg.Wait()
	stopProgress()
	elapsed := time.Since(start).Seconds()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[int(p*float64(len(latencies)-1))]) / 1e6
	}
	return benchResult{
		Concurrency: n, Requests: len(latencies) + errs, Errors: errs, Seconds: elapsed,
		PerSecond: float64(len(latencies)) / elapsed,
		P50ms:     pct(0.50), P99ms: pct(0.99), Maxms: pct(1),
	}
}

func newBenchConfigCommand() *cobra.Command {
	var (
		f       configFlags
		changes int
	)
	c := &cobra.Command{
		Use:   "config",
		Short: "Measure how fast a config change reaches every live switch",
		Long: `Put --changes successive changes to the limits key (the quota moves by one fen
each time and is put back at the end) and wait for every live switch to
report each one. Prints p50, p99 and max of the time from sending a change to
each switch having applied it (from the switches' reports; on one host the
clocks agree).`,
		Example: "  goldcard bench config --etcd http://127.0.0.1:2379 --changes 200",
		Args:    cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return benchConfig(c, f, changes)
		},
	}
	c.Flags().StringVar(&f.etcd, "etcd", "http://127.0.0.1:2379", "etcd URLs, separated by commas")
	c.Flags().StringVar(&f.prefix, "etcd-prefix", "/goldcard/", "prefix of the switch's etcd keys")
	c.Flags().IntVar(&changes, "changes", 200, "changes to put")
	c.Flags().DurationVar(&f.timeout, "timeout", 5*time.Second, "longest wait for one change")
	c.Flags().BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	return c
}

func benchConfig(c *cobra.Command, f configFlags, changes int) error {
	cl, err := client.DialEtcd(f.etcd)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := c.Context()
	kvs, _, err := config.Read(ctx, cl, f.prefix)
	if err != nil {
		return err
	}
	original, hadLimits := kvs[config.KeyLimits]
	lim := config.DefaultLimits()
	if hadLimits {
		if err := config.DecodeStrict(original, &lim); err != nil {
			return err
		}
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if hadLimits {
			_, _ = cl.Put(rctx, config.ConfigKey(f.prefix, config.KeyLimits), string(original))
		} else {
			_, _ = cl.Delete(rctx, config.ConfigKey(f.prefix, config.KeyLimits))
		}
	}()
	live, _, err := config.Instances(ctx, cl, f.prefix)
	if err != nil {
		return err
	}
	if len(live) == 0 {
		return errors.New("no live switch reports to this config center")
	}
	var lags []float64
	done := atomic.Int64{}
	stop := cli.Progress(c.ErrOrStderr(), &done, time.Now(), "changes")
	base := lim.RedemptionQuota
	for i := range changes {
		lim.RedemptionQuota = base + int64(i%2) + 1
		v, _ := json.Marshal(lim)
		start := time.Now()
		resp, err := cl.Put(ctx, config.ConfigKey(f.prefix, config.KeyLimits), string(v))
		if err != nil {
			stop()
			return err
		}
		results, err := client.WaitApplied(ctx, cl, f.prefix, live, resp.Header.Revision, start, f.timeout)
		if err != nil {
			stop()
			return err
		}
		for _, r := range results {
			lags = append(lags, r.AfterMS)
		}
		done.Add(1)
	}
	stop()
	slices.Sort(lags)
	pct := func(p float64) float64 { return lags[int(p*float64(len(lags)-1))] }
	res := map[string]any{"switches": len(live), "changes": changes, "p50_ms": pct(.5), "p99_ms": pct(.99), "max_ms": pct(1)}
	if f.asJSON {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintln(c.OutOrStdout(), string(b))
		return nil
	}
	fmt.Fprintf(c.OutOrStdout(), "%d changes x %d switches: applied after p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
		changes, len(live), pct(.5), pct(.99), pct(1))
	return nil
}

// benchProbe is the kind of the benchmark's tasks: no switch handles it,
// so a running switch on the same database leaves them alone.
const benchProbe = "bench.probe"

type benchTimerFlags struct {
	serveFlags
	tasks  int
	span   time.Duration
	asJSON bool
}

func newBenchTimerCommand() *cobra.Command {
	var f benchTimerFlags
	c := &cobra.Command{
		Use:   "timer",
		Short: "Measure the timer: schedule tasks over a span and report how late they fire",
		Long: `Schedule --tasks probe tasks due evenly over --span, fire them from this process
(as the timer's elected leader, on the same database and etcd flags as serve),
and report firing lateness p50/p99/max, tasks fired and lost, and the memory
of the in-memory schedule. The probe tasks and their records are removed
afterwards.`,
		Example: "  goldcard bench timer --tasks 100000 --span 20s",
		Args:    cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return benchTimer(c, f)
		},
	}
	fl := c.Flags()
	fl.IntVar(&f.tasks, "tasks", 100000, "tasks to schedule")
	fl.DurationVar(&f.span, "span", 20*time.Second, "span the tasks are due over")
	fl.StringVar(&f.db, "db", cli.DefaultDB(), "PostgreSQL URL (default $GOLDCARD_DB)")
	fl.StringVar(&f.dataDir, "data-dir", "./var", "directory for the embedded etcd")
	fl.StringVar(&f.etcd, "etcd", "", "etcd cluster to join (default: run an embedded single-node etcd)")
	fl.StringVar(&f.etcdListen, "etcd-listen", "127.0.0.1:2379", "client address of the embedded etcd")
	fl.StringVar(&f.etcdPrefix, "etcd-prefix", "/goldcard/", "prefix of the etcd keys")
	fl.DurationVar(&f.lockTTL, "lock-ttl", 5*time.Second, "lease of the election")
	fl.BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	return c
}

func benchTimer(c *cobra.Command, f benchTimerFlags) error {
	ctx := c.Context()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool, err := cli.OpenDatabase(ctx, f.db, 32, log)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := os.MkdirAll(f.dataDir, 0o750); err != nil {
		return err
	}
	etcd, closeEtcd, err := cli.ConnectEtcd(cli.Etcd{Endpoints: f.etcd, Listen: f.etcdListen, DataDir: f.dataDir}, log)
	if err != nil {
		return err
	}
	defer closeEtcd()

	run := fmt.Sprintf("bench-%d-", time.Now().UnixNano())
	var (
		mu    sync.Mutex
		late  = make([]time.Duration, 0, f.tasks)
		seen  = make(map[string]bool, f.tasks)
		fired atomic.Int64
	)
	tm := timer.New(timer.Options{Pool: pool, Log: log, ClaimFor: 2 * f.lockTTL})
	tm.Handle(benchProbe, func(ctx context.Context, task timer.Task) error {
		l := time.Since(task.Due)
		mu.Lock()
		if !seen[task.Key] {
			seen[task.Key] = true
			late = append(late, l)
			fired.Add(1)
		}
		mu.Unlock()
		return nil
	})
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = pool.Exec(cctx, `DELETE FROM timer_tasks WHERE kind = $1 AND key LIKE $2`, benchProbe, run+"%")
	}()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	election := locks.NewElection(etcd, locks.Options{Prefix: f.etcdPrefix, TTL: f.lockTTL, Log: log}, "bench-timer", "bench")
	led := make(chan struct{})
	go election.Run(lctx, func(ctx context.Context, token int64) {
		close(led)
		_ = tm.Lead(ctx, token)
	})
	select {
	case <-led:
	case <-time.After(30 * time.Second):
		return errors.New("not elected within 30s")
	}
	// The first task is due once all are scheduled and loaded.
	start := time.Now().Add(3*time.Second + time.Duration(f.tasks/50)*time.Microsecond*10)
	items := make([]timer.Item, 0, 5000)
	for i := range f.tasks {
		items = append(items, timer.Item{Kind: benchProbe, Key: fmt.Sprintf("%s%07d", run, i), Due: start.Add(f.span * time.Duration(i) / time.Duration(f.tasks))})
		if len(items) == cap(items) || i == f.tasks-1 {
			if _, err := tm.ScheduleMany(ctx, items); err != nil {
				return err
			}
			items = items[:0]
		}
	}
	if wait := time.Until(start); wait > 0 {
		time.Sleep(wait / 2)
	}
	runtime.ReadMemStats(&after)
	stopProgress := cli.Progress(c.ErrOrStderr(), &fired, time.Now(), "timers fired")
	deadline := start.Add(f.span + 10*time.Second)
	for fired.Load() < int64(f.tasks) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	stopProgress()
	stop()

	mu.Lock()
	defer mu.Unlock()
	slices.Sort(late)
	pct := func(p float64) float64 {
		if len(late) == 0 {
			return 0
		}
		return float64(late[int(p*float64(len(late)-1))].Microseconds()) / 1000
	}
	mem := int64(after.HeapInuse) - int64(before.HeapInuse)
	res := map[string]any{
		"tasks": f.tasks, "fired": len(late), "lost": f.tasks - len(late),
		"lateness_p50_ms": pct(.5), "lateness_p99_ms": pct(.99), "lateness_max_ms": pct(1),
		"schedule_bytes": mem,
	}
	if f.asJSON {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintln(c.OutOrStdout(), string(b))
	} else {
		fmt.Fprintf(c.OutOrStdout(), "%d tasks over %s: %d fired, %d lost; lateness p50 %.2f ms, p99 %.2f ms, max %.2f ms; schedule ~%.1f MiB in memory\n",
			f.tasks, f.span, len(late), f.tasks-len(late), pct(.5), pct(.99), pct(1), float64(mem)/(1<<20))
	}
	if len(late) != f.tasks {
		return fmt.Errorf("%d tasks did not fire", f.tasks-len(late))
	}
	return nil
}
