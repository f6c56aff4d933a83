package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/goldcard/goldcard/locks"
	"github.com/goldcard/goldcard/switch/internal/cli"
	"github.com/goldcard/goldcard/switch/internal/timer"
)

// probeKind is the kind of the benchmark's tasks: no switch handles it,
// so a running switch on the same database leaves them alone.
const probeKind = "bench.probe"

// timerFlags are the flags of bench timer: the database and etcd are
// named as serve names them.
type timerFlags struct {
	db, dataDir              string
	etcd, etcdListen, prefix string
	lockTTL                  time.Duration
	tasks                    int
	span                     time.Duration
	asJSON                   bool
}

func timerCommand() *cobra.Command {
	var f timerFlags
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
			return runTimer(c, f)
		},
	}
	fl := c.Flags()
	fl.IntVar(&f.tasks, "tasks", 100000, "tasks to schedule")
	fl.DurationVar(&f.span, "span", 20*time.Second, "span the tasks are due over")
	fl.StringVar(&f.db, "db", cli.DefaultDB(), "PostgreSQL URL (default $GOLDCARD_DB)")
	fl.StringVar(&f.dataDir, "data-dir", "./var", "directory for the embedded etcd")
	fl.StringVar(&f.etcd, "etcd", "", "etcd cluster to join (default: run an embedded single-node etcd)")
	fl.StringVar(&f.etcdListen, "etcd-listen", "127.0.0.1:2379", "client address of the embedded etcd")
	fl.StringVar(&f.prefix, "etcd-prefix", "/goldcard/", "prefix of the etcd keys")
	fl.DurationVar(&f.lockTTL, "lock-ttl", 5*time.Second, "lease of the election")
	fl.BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	return c
}

func runTimer(c *cobra.Command, f timerFlags) error {
	ctx := c.Context()
	pool, log, err := openQuietly(ctx, f.db, 32)
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
	tm.Handle(probeKind, func(ctx context.Context, task timer.Task) error {
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
		_, _ = pool.Exec(cctx, `DELETE FROM timer_tasks WHERE kind = $1 AND key LIKE $2`, probeKind, run+"%")
	}()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	election := locks.NewElection(etcd, locks.Options{Prefix: f.prefix, TTL: f.lockTTL, Log: log}, "bench-timer", "bench")
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
		items = append(items, timer.Item{Kind: probeKind, Key: fmt.Sprintf("%s%07d", run, i), Due: start.Add(f.span * time.Duration(i) / time.Duration(f.tasks))})
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
