package timer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Task is a due task as its handler sees it.
type Task struct {
	Kind     string
	Key      string
	Due      time.Time
	Payload  json.RawMessage
	Attempts int // including this one
}

// Handler runs a task. It must be idempotent. An error has the task tried
// again later, with exponential backoff, up to the attempt limit; Again
// has it run again after a wait without counting as a failure.
type Handler func(ctx context.Context, t Task) error

// Again is returned by a handler whose task is not finished yet (an order
// still pending, say): the task runs again after the wait. Its attempts
// keep counting (Task.Attempts), for a handler that backs off by them.
func Again(after time.Duration, why string) error { return &again{after: after, why: why} }

// Continue is Again for a long job that is not failing (it made progress,
// or gave way to others): its attempts are counted afresh, so that only
// failures in a row park it.
func Continue(after time.Duration, why string) error {
	return &again{after: after, why: why, progress: true}
}

type again struct {
	after    time.Duration
	why      string
	progress bool
}

func (a *again) Error() string { return "not finished: " + a.why }

// Metrics are told what the timer does.
type Metrics interface {
	Fired(kind string, lateness time.Duration)
	Retried(kind string)
	Dead(kind string)
	Leading(bool)
}

// Options configure a Timer.
type Options struct {
	Pool *pgxpool.Pool
	// Workers bounds the handlers running at once (default 64).
	Workers int
	// ClaimFor bounds a handler's run: its claim on the task lasts this
	// long, after which another leader may run it again (default 30s).
	ClaimFor time.Duration
	// MaxAttempts parks a task as dead after this many failures (default 10).
	MaxAttempts int
	// MaxBackoff caps the wait between attempts (default 5m).
	MaxBackoff time.Duration
	// Horizon is how far ahead the schedule is held in memory (default 10m).
	Horizon time.Duration
	Log     *slog.Logger
	Metrics Metrics
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Timer schedules tasks and, while leading, fires them.
type Timer struct {
	o Options

	mu       sync.Mutex // guards handlers
	handlers map[string]registered
}

type registered struct {
	h        Handler
	claimFor time.Duration
	// atOnce, when not nil, bounds the kind's runs at once.
	atOnce chan struct{}
}

// notifyChannel carries news of tasks scheduled to the leader.
const notifyChannel = "goldcard_timer"

// lookahead is how early tasks are claimed, so that they fire on time.
const lookahead = 20 * time.Millisecond

// New returns a timer on o.Pool.
func New(o Options) *Timer {
	if o.Workers <= 0 {
		o.Workers = 64
	}
	if o.ClaimFor <= 0 {
		o.ClaimFor = 30 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.Horizon <= 0 {
		o.Horizon = 10 * time.Minute
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Timer{o: o, handlers: map[string]registered{}}
}

// Handle registers the handler of a kind of task, which may run for the
// timer's ClaimFor.
func (t *Timer) Handle(kind string, h Handler) { t.HandleFor(kind, 0, h) }

// HandleFor registers a handler that may run for claimFor (0: ClaimFor).
func (t *Timer) HandleFor(kind string, claimFor time.Duration, h Handler) {
	if claimFor <= 0 {
		claimFor = t.o.ClaimFor
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.handlers[kind] = registered{h: h, claimFor: claimFor, atOnce: t.handlers[kind].atOnce}
}

// Limit lets at most n tasks of kind run at once (n < 1: no limit), so that
// a kind with many long tasks due together (a day's batches) leaves the
// workers to every other kind. A task waiting for its kind's turn holds no
// worker.
func (t *Timer) Limit(kind string, n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.handlers[kind]
	r.atOnce = nil
	if n > 0 {
		r.atOnce = make(chan struct{}, n)
	}
	t.handlers[kind] = r
}

func (t *Timer) handler(kind string) (registered, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.handlers[kind]
	return r, ok && r.h != nil
}

// claimFor is how long a claim on a task of kind lasts.
func (t *Timer) claimFor(kind string) time.Duration {
	if r, ok := t.handler(kind); ok {
		return r.claimFor
	}
	return t.o.ClaimFor
}

// Schedule records a task due at due. A task with the same kind and key
// already scheduled (or run) is left as it is; Schedule reports whether it
// made a new one. The leader hears of it at once.
func (t *Timer) Schedule(ctx context.Context, kind, key string, due time.Time, payload any) (bool, error) {
	p, err := json.Marshal(payload)
	if err != nil {
		return false, fmt.Errorf("timer: payload: %w", err)
	}
	if payload == nil {
		p = []byte("{}")
	}
	var created bool
	err = t.o.Pool.QueryRow(ctx, `WITH ins AS (
			INSERT INTO timer_tasks (kind, key, due_at, payload) VALUES ($1, $2, $3, $4)
			ON CONFLICT (kind, key) DO NOTHING RETURNING kind, key, due_at)
		SELECT count(pg_notify('`+notifyChannel+`', json_build_object('kind', kind, 'key', key,
			'due', (extract(epoch FROM due_at) * 1000000)::bigint)::text)) > 0 FROM ins`,
		kind, key, due, p).Scan(&created)
	if err != nil {
		return false, fmt.Errorf("timer: scheduling %s/%s: %w", kind, key, err)
	}
	return created, nil
}

// Item is one task to schedule in ScheduleMany.
type Item struct {
	Kind, Key string
	Due       time.Time
}

// ScheduleMany records many payload-less tasks in one statement and tells
// the leader to look for them; it returns how many were new.
func (t *Timer) ScheduleMany(ctx context.Context, items []Item) (int, error) {
	kinds, keys, dues := make([]string, len(items)), make([]string, len(items)), make([]time.Time, len(items))
	for i, it := range items {
		kinds[i], keys[i], dues[i] = it.Kind, it.Key, it.Due
	}
	tag, err := t.o.Pool.Exec(ctx, `INSERT INTO timer_tasks (kind, key, due_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]) ON CONFLICT (kind, key) DO NOTHING`, kinds, keys, dues)
	if err != nil {
		return 0, fmt.Errorf("timer: scheduling: %w", err)
	}
	if _, err := t.o.Pool.Exec(ctx, `SELECT pg_notify('`+notifyChannel+`', 'reload')`); err != nil {
		return int(tag.RowsAffected()), err
	}
	return int(tag.RowsAffected()), nil
}

// ErrRunning is RunNow's answer for a task being run now.
var ErrRunning = errors.New("timer: the task is being run")

// RunNow makes a pending task due now and tells the leader, which runs it
// as soon as a worker is free (an operator's "run today's sweep now"). It
// reports whether there was such a task; one being run is ErrRunning.
func (t *Timer) RunNow(ctx context.Context, kind, key string) (bool, error) {
	var found, running bool
	err := t.o.Pool.QueryRow(ctx, `WITH up AS (
			UPDATE timer_tasks SET due_at = now() WHERE kind = $1 AND key = $2 AND state = 'pending'
				AND (claimed_until IS NULL OR claimed_until < now()) RETURNING kind, key, due_at)
		SELECT count(pg_notify('`+notifyChannel+`', json_build_object('kind', kind, 'key', key,
			'due', (extract(epoch FROM due_at) * 1000000)::bigint)::text)) > 0,
			EXISTS (SELECT 1 FROM timer_tasks WHERE kind = $1 AND key = $2 AND state = 'pending' AND claimed_until >= now())
		FROM up`, kind, key).Scan(&found, &running)
	if err != nil {
		return false, fmt.Errorf("timer: running %s/%s now: %w", kind, key, err)
	}
	if !found && running {
		return true, ErrRunning
	}
	return found, nil
}

// Revive makes a task that ended (done or dead, not cancelled) pending again,
// due now, with its attempts counted afresh (a dead task retried by an
// operator, a job found unfinished); it reports whether there was one.
func (t *Timer) Revive(ctx context.Context, kind, key string) (bool, error) {
	var found bool
	err := t.o.Pool.QueryRow(ctx, `WITH up AS (
			UPDATE timer_tasks SET state = 'pending', due_at = now(), done_at = NULL, attempts = 0, claim = NULL, claimed_until = NULL
			WHERE kind = $1 AND key = $2 AND state IN ('done', 'dead') RETURNING kind, key, due_at)
		SELECT count(pg_notify('`+notifyChannel+`', json_build_object('kind', kind, 'key', key,
			'due', (extract(epoch FROM due_at) * 1000000)::bigint)::text)) > 0 FROM up`, kind, key).Scan(&found)
	if err != nil {
		return false, fmt.Errorf("timer: reviving %s/%s: %w", kind, key, err)
	}
	return found, nil
}

// Cancel stops a pending task from running; it reports whether there was
// one to stop.
func (t *Timer) Cancel(ctx context.Context, kind, key string) (bool, error) {
	tag, err := t.o.Pool.Exec(ctx, `UPDATE timer_tasks SET state = 'cancelled', done_at = now()
		WHERE kind = $1 AND key = $2 AND state = 'pending'`, kind, key)
	if err != nil {
		return false, fmt.Errorf("timer: cancelling %s/%s: %w", kind, key, err)
	}
	return tag.RowsAffected() == 1, nil
}

// backoff is the wait before attempt n+1.
func (t *Timer) backoff(n int) time.Duration {
	d := time.Second << min(n-1, 20)
	return min(d, t.o.MaxBackoff)
}

type noMetrics struct{}

func (noMetrics) Fired(string, time.Duration) {}
func (noMetrics) Retried(string)              {}
func (noMetrics) Dead(string)                 {}
func (noMetrics) Leading(bool)                {}
