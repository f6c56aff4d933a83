package timer

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Lead fires tasks until ctx ends: the caller holds the leadership for
// that long, in the term token (which grows with every new leader; claims
// of older terms are taken over at once).
func (t *Timer) Lead(ctx context.Context, token int64) error {
	t.o.Metrics.Leading(true)
	defer t.o.Metrics.Leading(false)
	l := &leader{
		t: t, token: token, sched: newSchedule(), sem: make(chan struct{}, t.o.Workers),
		done: make(chan finished, 4096), unclaimed: make(chan []entry, 64), succeeded: make(chan finished, 4096),
	}
	return l.run(ctx)
}

// leader is one term of firing tasks. Its loop owns the schedule; claims,
// handlers and the recording of finished runs happen on other goroutines
// and report back on channels.
type leader struct {
	t     *Timer
	token int64 // the leadership term
	sched *schedule
	// done carries every run's end; unclaimed carries due tasks a claim
	// did not take.
	done      chan finished
	unclaimed chan []entry
	// succeeded feeds the recorder of successful runs.
	succeeded chan finished
	sem       chan struct{}
	wg        sync.WaitGroup
	// horizon is the time up to which the schedule holds every task;
	// reloaded is when it was last read.
	horizon  time.Time
	reloaded time.Time
}

// finished is a task's run, reported by its worker.
type finished struct {
	id
	claim string
	err   error
}

func (l *leader) run(ctx context.Context) error {
	notes, stopListen, err := l.listen(ctx)
	if err != nil {
		return err
	}
	defer stopListen()
	if err := l.reload(ctx, false); err != nil {
		return err
	}
	reload := time.NewTicker(l.t.o.Horizon / 4)
	defer reload.Stop()
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	recorded := make(chan struct{})
	go func() { defer close(recorded); l.record(ctx) }()
	defer func() { <-recorded }()
	defer l.wg.Wait()
	for {
		l.fireDue(ctx)
		if next, ok := l.sched.next(); ok {
			// Woken half a lookahead early, each wake claims what falls due
			// in the next half to whole lookahead at once.
			wake.Reset(max(time.Until(next)-lookahead/2, 0))
		} else {
			wake.Reset(l.t.o.Horizon)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wake.C:
		case n := <-notes:
			l.note(ctx, n)
		case f := <-l.done:
			l.finish(ctx, f)
		case es := <-l.unclaimed:
			for _, e := range es {
				l.sched.forget(e.id)
				if !e.due.IsZero() {
					l.sched.add(e.id, e.due)
				}
			}
		case <-reload.C:
			if err := l.reload(ctx, false); err != nil {
				l.t.o.Log.Warn("timer: reloading the schedule", "err", err)
			}
		}
	}
}

// kinds lists the kinds of task this timer has handlers for.
func (t *Timer) kinds() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.handlers))
	for k, r := range t.handlers {
		if r.h != nil {
			out = append(out, k)
		}
	}
	return out
}

// reload reads the pending tasks due within the horizon into the schedule:
// only kinds this timer handles, so that a leader never claims what it
// cannot run (another program's tasks, a newer version's).
//
// A recent reload reads only the tasks made since the last one (less a
// margin for transactions still committing); the periodic full reload
// catches anything that missed.
func (l *leader) reload(ctx context.Context, recent bool) error {
	now := l.t.o.Now()
	horizon := now.Add(l.t.o.Horizon)
	since := time.Time{}
	if recent && !l.reloaded.IsZero() {
		since = l.reloaded.Add(-5 * time.Second)
	}
	rows, err := l.t.o.Pool.Query(ctx, `SELECT kind, key, due_at FROM timer_tasks
		WHERE state = 'pending' AND due_at <= $1 AND kind = ANY($2) AND created_at > $3 ORDER BY due_at`,
		horizon, l.t.kinds(), since)
	l.reloaded = now
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var e entry
		if err := rows.Scan(&e.kind, &e.key, &e.due); err != nil {
			return err
		}
		l.sched.add(e.id, e.due)
	}
	if since.IsZero() {
		l.horizon = horizon
	}
	return rows.Err()
}

// note takes news of a scheduled task.
func (l *leader) note(ctx context.Context, payload string) {
	var n struct {
		Kind, Key string
		Due       int64
	}
	if payload == "reload" || json.Unmarshal([]byte(payload), &n) != nil {
		if err := l.reload(ctx, true); err != nil {
			l.t.o.Log.Warn("timer: reloading the schedule", "err", err)
		}
		return
	}
	due := time.UnixMicro(n.Due)
	if _, handled := l.t.handler(n.Kind); handled && !due.After(l.horizon) {
		l.sched.add(id{n.Kind, n.Key}, due)
	}
}

// fireDue hands the tasks due within the lookahead to a claimer, which
// starts those it claims.
func (l *leader) fireDue(ctx context.Context) {
	due := l.sched.popDue(l.t.o.Now().Add(lookahead))
	if len(due) == 0 {
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		claim := newClaim()
		tasks, err := l.claim(ctx, due, claim)
		if err != nil {
			if ctx.Err() == nil {
				l.t.o.Log.Warn("timer: claiming due tasks; a reload finds them again", "tasks", len(due), "err", err)
			}
			tasks = nil
		}
		claimed := map[id]bool{}
		for _, task := range tasks {
			claimed[id{task.Kind, task.Key}] = true
			l.start(ctx, task, claim)
		}
		// Done or cancelled meanwhile, or still claimed by an earlier
		// leader: those are tried again when their claim runs out.
		var missed []entry
		for _, e := range due {
			if !claimed[e.id] {
				missed = append(missed, entry{id: e.id})
			}
		}
		if len(missed) > 0 && err == nil {
			l.whenFree(ctx, missed)
		}
		if len(missed) > 0 {
			select {
			case l.unclaimed <- missed:
			case <-ctx.Done():
			}
		}
	}()
}

// whenFree sets the due time of tasks still claimed by another leader to
// when that claim runs out; the others stay zero (forgotten).
func (l *leader) whenFree(ctx context.Context, es []entry) {
	kinds, keys := make([]string, len(es)), make([]string, len(es))
	for i, e := range es {
		kinds[i], keys[i] = e.kind, e.key
	}
	rows, err := l.t.o.Pool.Query(ctx, `SELECT t.kind, t.key, t.claimed_until FROM timer_tasks t
		WHERE t.key = ANY($2::text[]) AND t.kind = ANY($1::text[])
		  AND t.state = 'pending' AND t.claimed_until IS NOT NULL AND t.claim_token >= $3`, kinds, keys, l.token)
	if err != nil {
		return
	}
	defer rows.Close()
	free := map[id]time.Time{}
	for rows.Next() {
		var i id
		var until time.Time
		if rows.Scan(&i.kind, &i.key, &until) == nil {
			free[i] = until.Add(time.Millisecond)
		}
	}
	for n := range es {
		es[n].due = free[es[n].id]
	}
}

// claim takes the tasks for this leader's run, one statement per kind.
// Each reads the primary key with a list of keys, a plan that does not
// depend on the table's statistics: a join with unnest, or a plain state
// test that matches the partial index of pending tasks, lets the planner
// scan every pending task instead.
func (l *leader) claim(ctx context.Context, due []entry, claim string) ([]Task, error) {
	byKind := map[string][]string{}
	for _, e := range due {
		byKind[e.kind] = append(byKind[e.kind], e.key)
	}
	var out []Task
	for kind, keys := range byKind {
		rows, err := l.t.o.Pool.Query(ctx, `UPDATE timer_tasks t SET claim = $3, claimed_until = now() + $4::interval,
				claim_token = $5, attempts = t.attempts + 1, fired_at = now()
			WHERE t.kind = $1 AND t.key = ANY($2::text[]) AND coalesce(t.state, '') = 'pending'
			  AND (t.claimed_until IS NULL OR t.claimed_until < now() OR t.claim_token < $5)
			RETURNING t.kind, t.key, t.due_at, t.payload, t.attempts`, kind, keys, claim, l.t.claimFor(kind)+lookahead, l.token)
		if err != nil {
			return out, err
		}
		tasks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Task, error) {
			var t Task
			err := r.Scan(&t.Kind, &t.Key, &t.Due, &t.Payload, &t.Attempts)
			return t, err
		})
		if err != nil {
			return out, err
		}
		out = append(out, tasks...)
	}
	return out, nil
}

// errClaimLost is a task whose claim another leader took while it waited.
var errClaimLost = errors.New("the claim was taken over")

// start runs a claimed task's handler at its due time, on a worker.
func (l *leader) start(ctx context.Context, task Task, claim string) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		f := finished{id: id{task.Kind, task.Key}, claim: claim}
		defer func() {
			select {
			case l.done <- f:
			case <-ctx.Done():
			}
		}()
		if wait := task.Due.Sub(l.t.o.Now()); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				f.err = ctx.Err()
				return
			}
		}
		r, ok := l.t.handler(task.Kind)
		if !ok {
			f.err = fmt.Errorf("no handler for task kind %q", task.Kind)
			return
		}
		if r.atOnce != nil {
			select {
			case r.atOnce <- struct{}{}:
			case <-ctx.Done():
				f.err = ctx.Err()
				return
			}
			defer func() { <-r.atOnce }()
		}
		select {
		case l.sem <- struct{}{}:
		case <-ctx.Done():
			f.err = ctx.Err()
			return
		}
		defer func() { <-l.sem }()
		if r.atOnce != nil {
			// Its claim may have run out while it waited for its kind's
			// turn: it is renewed, or the task is left to whoever took it.
			tag, err := l.t.o.Pool.Exec(ctx, `UPDATE timer_tasks SET claimed_until = now() + $4::interval
				WHERE kind = $1 AND key = $2 AND claim = $3 AND state = 'pending'`, task.Kind, task.Key, claim, r.claimFor)
			switch {
			case err != nil:
				// Not the handler's failure: tried again soon, uncounted.
				f.err = &again{after: time.Second, why: "renewing the claim: " + err.Error()}
				return
			case tag.RowsAffected() == 0:
				f.err = errClaimLost
				return
			}
		}
		l.t.o.Metrics.Fired(task.Kind, l.t.o.Now().Sub(task.Due))
		hctx, cancel := context.WithTimeout(ctx, r.claimFor)
		defer cancel()
		f.err = run(hctx, r.h, task)
	}()
}

// run calls a handler, turning a panic into an error.
func run(ctx context.Context, h Handler, t Task) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h(ctx, t)
}

// finish takes a task's run off the schedule and has it recorded: done,
// to be retried, or dead.
func (l *leader) finish(ctx context.Context, f finished) {
	l.sched.forget(f.id)
	if ctx.Err() != nil {
		return // the claim runs out; the next leader runs it again
	}
	if f.err == nil {
		select {
		case l.succeeded <- f:
		case <-ctx.Done():
		}
		return
	}
	if err := l.retry(ctx, f); err != nil {
		l.t.o.Log.Warn("timer: recording a failed run; it will run again", "kind", f.kind, "key", f.key, "err", err)
	}
}

// record marks successful runs done, many per statement.
func (l *leader) record(ctx context.Context) {
	var batch []finished
	flush := func() {
		if len(batch) == 0 {
			return
		}
		type group struct{ keys, claims []string }
		byKind := map[string]*group{}
		for _, f := range batch {
			g := byKind[f.kind]
			if g == nil {
				g = &group{}
				byKind[f.kind] = g
			}
			g.keys = append(g.keys, f.key)
			if !slices.Contains(g.claims, f.claim) {
				g.claims = append(g.claims, f.claim)
			}
		}
		for kind, g := range byKind {
			// Only rows still claimed by one of this leader's claims.
			_, err := l.t.o.Pool.Exec(context.WithoutCancel(ctx), `UPDATE timer_tasks SET state = 'done', done_at = now(),
					claim = NULL, claimed_until = NULL
				WHERE kind = $1 AND key = ANY($2::text[]) AND claim = ANY($3::uuid[])`, kind, g.keys, g.claims)
			if err != nil {
				l.t.o.Log.Warn("timer: recording finished runs; they will run again", "runs", len(g.keys), "err", err)
			}
		}
		batch = batch[:0]
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case f := <-l.succeeded:
			batch = append(batch, f)
			if len(batch) >= 512 {
				flush()
			}
		case <-tick.C:
			flush()
		case <-ctx.Done():
			// Record what finished before the term ended.
			for {
				select {
				case f := <-l.succeeded:
					batch = append(batch, f)
				default:
					flush()
					return
				}
			}
		}
	}
}

// retry schedules a failed task again, or parks it as dead.
func (l *leader) retry(ctx context.Context, f finished) error {
	var attempts int
	err := l.t.o.Pool.QueryRow(ctx, `SELECT attempts FROM timer_tasks WHERE kind = $1 AND key = $2 AND claim = $3`,
		f.kind, f.key, f.claim).Scan(&attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // no longer ours
	}
	if err != nil {
		return err
	}
	var a *again
	if errors.As(f.err, &a) {
		due := l.t.o.Now().Add(a.after)
		// Progress made (Continue): the failures that park a task are
		// counted from here; a plain Again keeps its count, which its
		// handler may back off by.
		_, err = l.t.o.Pool.Exec(ctx, `UPDATE timer_tasks SET due_at = $4, last_error = $5, claim = NULL, claimed_until = NULL,
				attempts = CASE WHEN $6 THEN 0 ELSE attempts END
			WHERE kind = $1 AND key = $2 AND claim = $3`, f.kind, f.key, f.claim, due, a.why, a.progress)
		if err == nil && !due.After(l.horizon) {
			l.sched.add(f.id, due)
		}
		return err
	}
	if attempts >= l.t.o.MaxAttempts {
		l.t.o.Metrics.Dead(f.kind)
		l.t.o.Log.Error("timer: task failed for good; parked as dead", "kind", f.kind, "key", f.key, "attempts", attempts, "err", f.err)
		_, err = l.t.o.Pool.Exec(ctx, `UPDATE timer_tasks SET state = 'dead', done_at = now(), last_error = $4,
			claim = NULL, claimed_until = NULL WHERE kind = $1 AND key = $2 AND claim = $3`, f.kind, f.key, f.claim, f.err.Error())
		return err
	}
	due := l.t.o.Now().Add(l.t.backoff(attempts))
	l.t.o.Metrics.Retried(f.kind)
	l.t.o.Log.Warn("timer: task failed; trying again", "kind", f.kind, "key", f.key, "attempt", attempts, "at", due, "err", f.err)
	_, err = l.t.o.Pool.Exec(ctx, `UPDATE timer_tasks SET due_at = $4, last_error = $5, claim = NULL, claimed_until = NULL
		WHERE kind = $1 AND key = $2 AND claim = $3`, f.kind, f.key, f.claim, due, f.err.Error())
	if err == nil && !due.After(l.horizon) {
		l.sched.add(f.id, due)
	}
	return err
}

// listen subscribes to news of scheduled tasks on a connection of its own.
func (l *leader) listen(ctx context.Context) (<-chan string, func(), error) {
	conn, err := l.t.o.Pool.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		conn.Release()
		return nil, nil, err
	}
	notes := make(chan string, 256)
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			n, err := conn.Conn().WaitForNotification(lctx)
			if err != nil {
				if lctx.Err() == nil {
					l.t.o.Log.Warn("timer: listening for scheduled tasks; reloading instead", "err", err)
					select {
					case notes <- "reload":
					default:
					}
				}
				return
			}
			select {
			case notes <- n.Payload:
			default:
				// Too much news: one reload covers it.
				select {
				case notes <- "reload":
				default:
				}
			}
		}
	}()
	return notes, func() {
		cancel()
		<-done
		// The connection may be mid-wait; it is not returned to the pool.
		_ = conn.Conn().Close(context.Background())
		conn.Release()
	}, nil
}

func newClaim() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
