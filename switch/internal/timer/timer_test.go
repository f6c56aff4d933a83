package timer_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goldcard/goldcard/ledger/ledgertest"
	"github.com/goldcard/goldcard/switch/internal/timer"
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

// TestScheduleFireRetryCancel: a task scheduled before any leader fires
// once one leads, never before it is due; the same task scheduled twice is
// one task; a cancelled one never fires; one scheduled while the leader
// waits for a later task wakes it; a failing task is retried, and parked
// as dead after its last attempt.
func TestScheduleFireRetryCancel(t *testing.T) {
	_, pool := ledgertest.New(t)
	ctx := context.Background()
	// The horizon puts the periodic reload (a quarter of it) out of the
	// test's reach: a task the leader is not told of would wait for it.
	tm := timer.New(timer.Options{Pool: pool, MaxAttempts: 3, MaxBackoff: 50 * time.Millisecond, ClaimFor: 5 * time.Second, Horizon: 4 * time.Hour})
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
	hasFired := func(key string) bool { mu.Lock(); defer mu.Unlock(); _, ok := fired[key]; return ok }
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
	// Within the horizon, so the leader sleeps until it.
	tm.Schedule(ctx, "greet", "later", time.Now().Add(2*time.Hour), nil)
	lead(t, tm)
	eventually(t, "a to fire", func() bool { return hasFired("a") })
	// Scheduled while the leader sleeps until "later", due sooner: it
	// wakes the leader, which would otherwise sleep for two hours.
	tm.Schedule(ctx, "greet", "b", time.Now().Add(100*time.Millisecond), nil)
	tm.Schedule(ctx, "flaky", "f", time.Now(), nil)
	tm.Schedule(ctx, "broken", "x", time.Now(), nil)

	eventually(t, "b to fire", func() bool { return hasFired("b") })
	mu.Lock()
	if _, ok := fired["later"]; ok {
		t.Error("a task due in two hours fired")
	}
	if _, ok := fired["cancelled"]; ok {
		t.Error("a cancelled task fired")
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
	if s, _, _ := state("greet", "later"); s != "pending" {
		t.Errorf("the task due in two hours is %s", s)
	}
}

// TestNewLeaderFiresOverdue: tasks due while nobody led fire at once when
// a leader comes, without waiting for anything; a task claimed by a
// leader that died runs again once its claim runs out, and not before.
// When each was fired is the timer's own record (fired_at, the time of
// the claim that ran it).
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
	// A leader of a later term claimed one for 3s and died before running
	// it: its claim stands until it runs out.
	var claimedUntil time.Time
	if err := pool.QueryRow(ctx, `UPDATE timer_tasks SET claim = gen_random_uuid(), claimed_until = now() + interval '3 s',
		claim_token = $1 WHERE key = '3' RETURNING claimed_until`, time.Now().Add(time.Hour).UnixNano()).Scan(&claimedUntil); err != nil {
		t.Fatal(err)
	}
	lead(t, mk())
	eventually(t, "the overdue tasks", func() bool { return runs.Load() >= 2 })
	eventually(t, "the dead leader's task", func() bool { return runs.Load() == 3 })
	firedAt := map[string]time.Time{}
	rows, err := pool.Query(ctx, `SELECT key, fired_at FROM timer_tasks WHERE kind = 'job'`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var at time.Time
		if err := rows.Scan(&k, &at); err != nil {
			t.Fatal(err)
		}
		firedAt[k] = at
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"1", "2"} {
		if !firedAt[k].Before(claimedUntil) {
			t.Errorf("overdue task %s fired at %s, after the other leader's claim ran out at %s", k, firedAt[k], claimedUntil)
		}
	}
	if firedAt["3"].Before(claimedUntil) {
		t.Errorf("the claimed task fired at %s, before its claim ran out at %s", firedAt["3"], claimedUntil)
	}
}

// TestLimit: a kind limited to two runs at once never runs more, however
// many of its tasks are due; and its tasks waiting for their turn hold no
// worker, so another kind's task runs meanwhile.
func TestLimit(t *testing.T) {
	_, pool := ledgertest.New(t)
	ctx := context.Background()
	tm := timer.New(timer.Options{Pool: pool, Workers: 3, ClaimFor: time.Minute, Horizon: 4 * time.Hour})
	var running, most, ran atomic.Int32
	gate := make(chan struct{})
	tm.Handle("batch", func(ctx context.Context, _ timer.Task) error {
		n := running.Add(1)
		defer running.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		ran.Add(1)
		return nil
	})
	tm.Limit("batch", 2)
	other := make(chan struct{})
	tm.Handle("other", func(context.Context, timer.Task) error { close(other); return nil })
	items := []timer.Item{}
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		items = append(items, timer.Item{Kind: "batch", Key: k, Due: time.Now()})
	}
	if _, err := tm.ScheduleMany(ctx, items); err != nil {
		t.Fatal(err)
	}
	lead(t, tm)
	eventually(t, "two batches running", func() bool { return running.Load() == 2 })
	if _, err := tm.Schedule(ctx, "other", "x", time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-other:
	case <-time.After(15 * time.Second):
		t.Fatal("another kind's task did not run while the limited kind's waited")
	}
	close(gate)
	eventually(t, "every batch run", func() bool { return ran.Load() == 6 })
	if m := most.Load(); m != 2 {
		t.Fatalf("%d batches ran at once; the limit is 2", m)
	}
}

// TestRunNow: a task the leader already holds for later, made due now,
// runs at once; one that is not pending is not found.
func TestRunNow(t *testing.T) {
	_, pool := ledgertest.New(t)
	ctx := context.Background()
	tm := timer.New(timer.Options{Pool: pool, ClaimFor: time.Minute, Horizon: 4 * time.Hour})
	ran := make(chan string, 3)
	tm.Handle("later", func(_ context.Context, task timer.Task) error { ran <- task.Key; return nil })
	if _, err := tm.Schedule(ctx, "later", "a", time.Now().Add(2*time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	// The leader reads its schedule before it fires anything: once "b",
	// due now, has run, "a" is in it, for two hours on.
	if _, err := tm.Schedule(ctx, "later", "b", time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	lead(t, tm)
	select {
	case k := <-ran:
		if k != "b" {
			t.Fatalf("ran %q first", k)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the task due now did not run")
	}
	if ok, err := tm.RunNow(ctx, "later", "a"); !ok || err != nil {
		t.Fatalf("run now: %v %v", ok, err)
	}
	select {
	case k := <-ran:
		if k != "a" {
			t.Fatalf("ran %q", k)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the task made due now did not run")
	}
	eventually(t, "the run recorded", func() bool {
		ok, err := tm.RunNow(ctx, "later", "a")
		return !ok && err == nil
	})
	if ok, _ := tm.RunNow(ctx, "later", "nope"); ok {
		t.Fatal("an unknown task was found")
	}
}

// TestContinueIsNotAFailure: a long task that made progress many times
// over is not parked by its first failure after that, and a task parked as
// dead is revived with its attempts counted afresh.
func TestContinueIsNotAFailure(t *testing.T) {
	_, pool := ledgertest.New(t)
	ctx := context.Background()
	tm := timer.New(timer.Options{Pool: pool, MaxAttempts: 2, MaxBackoff: 20 * time.Millisecond, ClaimFor: 5 * time.Second, Horizon: 4 * time.Hour})
	var runs atomic.Int32
	tm.Handle("long", func(context.Context, timer.Task) error {
		switch n := runs.Add(1); {
		case n <= 5:
			return timer.Continue(0, "more to do")
		case n == 6:
			return errors.New("busy for a moment")
		default:
			return nil
		}
	})
	tm.Handle("broken", func(context.Context, timer.Task) error { return errors.New("always") })
	tm.Schedule(ctx, "long", "l", time.Now(), nil)
	tm.Schedule(ctx, "broken", "b", time.Now(), nil)
	lead(t, tm)
	state := func(kind, key string) (s string) {
		_ = pool.QueryRow(ctx, `SELECT state FROM timer_tasks WHERE kind = $1 AND key = $2`, kind, key).Scan(&s)
		return
	}
	eventually(t, "the long task to finish", func() bool { return state("long", "l") != "pending" })
	if s := state("long", "l"); s != "done" || runs.Load() != 7 {
		t.Fatalf("long task %s after %d runs, want done after 7", s, runs.Load())
	}
	eventually(t, "the broken task to be parked", func() bool { return state("broken", "b") == "dead" })
	if ok, err := tm.Revive(ctx, "broken", "b"); !ok || err != nil {
		t.Fatalf("revive: %v %v", ok, err)
	}
	if ok, _ := tm.Revive(ctx, "long", "nonesuch"); ok {
		t.Fatal("revived a task that does not exist")
	}
	var attempts int
	eventually(t, "the revived task to be parked again", func() bool {
		_ = pool.QueryRow(ctx, `SELECT attempts FROM timer_tasks WHERE kind = 'broken' AND key = 'b' AND state = 'dead'`).Scan(&attempts)
		return attempts == 2
	})
}
