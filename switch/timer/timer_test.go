package timer_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goldcard/goldcard/ledger/ledgertest"
	"github.com/goldcard/goldcard/switch/timer"
)

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lead runs tm as leader until the test ends.
func lead(t *testing.T, tm *timer.Timer) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = tm.Lead(ctx, time.Now().UnixNano()) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestScheduleFireRetryCancel(t *testing.T) {
	_, pool := ledgertest.New(t)
	ctx := context.Background()
	tm := timer.New(timer.Options{Pool: pool, MaxAttempts: 3, MaxBackoff: 50 * time.Millisecond, ClaimFor: 5 * time.Second})
	var (
		mu    sync.Mutex
		fired = map[string]time.Time{}
		late  = map[string]time.Duration{}
	)
	tm.Handle("greet", func(_ context.Context, task timer.Task) error {
		mu.Lock()
		defer mu.Unlock()
		fired[task.Key] = time.Now()
		late[task.Key] = time.Since(task.Due)
		return nil
	})
	var failures atomic.Int32
	tm.Handle("flaky", func(context.Context, timer.Task) error {
		if failures.Add(1) < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	tm.Handle("broken", func(context.Context, timer.Task) error { return errors.New("always") })

	// Scheduled before a leader exists; the same task twice is one task.
	due := time.Now().Add(300 * time.Millisecond)
	if ok, err := tm.Schedule(ctx, "greet", "a", due, map[string]int{"n": 1}); !ok || err != nil {
		t.Fatalf("schedule: %v %v", ok, err)
	}
	if ok, _ := tm.Schedule(ctx, "greet", "a", due.Add(time.Hour), nil); ok {
		t.Fatal("the same task was scheduled twice")
	}
	tm.Schedule(ctx, "greet", "cancelled", due, nil)
	if ok, _ := tm.Cancel(ctx, "greet", "cancelled"); !ok {
		t.Fatal("cancel")
	}
	lead(t, tm)
	// Scheduled while leading, due sooner than anything: it wakes the leader.
	tm.Schedule(ctx, "greet", "b", time.Now().Add(100*time.Millisecond), nil)
	tm.Schedule(ctx, "flaky", "f", time.Now(), nil)
	tm.Schedule(ctx, "broken", "x", time.Now(), nil)

	eventually(t, "a and b to fire", func() bool { mu.Lock(); defer mu.Unlock(); return len(fired) == 2 })
	mu.Lock()
	if !fired["b"].Before(fired["a"]) {
		t.Error("b fired after a")
	}
	for k, l := range late {
		if l < 0 {
			t.Errorf("%s fired %s early", k, -l)
		}
	}
	mu.Unlock()

	state := func(kind, key string) (s string, attempts int, lastErr string) {
		_ = pool.QueryRow(ctx, `SELECT state, attempts, coalesce(last_error, '') FROM timer_tasks WHERE kind = $1 AND key = $2`, kind, key).
			Scan(&s, &attempts, &lastErr)
		return
	}
	eventually(t, "the flaky task to succeed on its third attempt", func() bool { s, _, _ := state("flaky", "f"); return s == "done" })
	if _, n, _ := state("flaky", "f"); n != 3 {
		t.Errorf("flaky ran %d times", n)
	}
	eventually(t, "the broken task to be parked", func() bool { s, _, _ := state("broken", "x"); return s == "dead" })
	if _, n, e := state("broken", "x"); n != 3 || e != "always" {
		t.Errorf("dead task: %d attempts, error %q", n, e)
	}
	if s, _, _ := state("greet", "cancelled"); s != "cancelled" {
		t.Errorf("cancelled task is %s", s)
	}
	eventually(t, "a and b recorded done", func() bool {
		a, _, _ := state("greet", "a")
		b, _, _ := state("greet", "b")
		return a == "done" && b == "done"
	})
}

// TestNewLeaderFiresOverdue: tasks due while nobody led fire at once when
// a leader comes; tasks claimed by a leader that died run again once its
// claim runs out.
func TestNewLeaderFiresOverdue(t *testing.T) {
	_, pool := ledgertest.New(t)
	ctx := context.Background()
	var runs atomic.Int32
	mk := func() *timer.Timer {
		tm := timer.New(timer.Options{Pool: pool, ClaimFor: 300 * time.Millisecond})
		tm.Handle("job", func(context.Context, timer.Task) error { runs.Add(1); return nil })
		return tm
	}
	first := mk()
	for _, k := range []string{"1", "2", "3"} {
		first.Schedule(ctx, "job", k, time.Now().Add(-time.Minute), nil)
	}
	// A leader that claimed one and died before running it.
	if _, err := pool.Exec(ctx, `UPDATE timer_tasks SET claim = gen_random_uuid(), claimed_until = now() + interval '300 ms',
		claim_token = $1 WHERE key = '3'`, time.Now().Add(time.Hour).UnixNano()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	lead(t, mk())
	eventually(t, "the overdue tasks", func() bool { return runs.Load() == 2 })
	if d := time.Since(start); d > time.Second {
		t.Errorf("overdue tasks took %s", d)
	}
	eventually(t, "the dead leader's task", func() bool { return runs.Load() == 3 })
}
