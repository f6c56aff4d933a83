package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/config/configtest"
	"github.com/goldcard/goldcard/fund"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
	"github.com/goldcard/goldcard/switch/internal/timer"
)

// TestSweepTask runs the daily sweep task on a holiday and on a trading
// day, as the timer would: nothing moves on the holiday, the excess on the
// trading day, and its confirmation is due on the next trading day.
func TestSweepTask(t *testing.T) {
	srv, l := newTestSwitch(t, "calendar/2026", `{"holidays":["2026-10-01","2026-10-02","2026-10-05","2026-10-06","2026-10-07"]}`)
	ctx := context.Background()
	const pan = "6228480000003001"
	c, err := l.CreateCard(ctx, ledger.NewCard{PAN: pan, Currency: "156", Balance: 300000})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetSweep(ctx, c.ID, true, nil); err != nil {
		t.Fatal(err)
	}
	task := func(day string) timer.Task {
		d, _ := time.Parse(time.DateOnly, day)
		at, _ := fund.At(d, "15:00", fund.Shanghai)
		return timer.Task{Kind: taskSweepDay, Key: day, Due: at, Attempts: 1}
	}
	due := func(kind, key string) (time.Time, bool) {
		var at time.Time
		err := srv.pool.QueryRow(ctx, `SELECT due_at FROM timer_tasks WHERE kind = $1 AND key = $2`, kind, key).Scan(&at)
		return at, err == nil
	}

	// A day that has not begun where the sweep is kept sweeps nothing
	// and plans nothing, however early it is made due; nor is a day's
	// income paid ahead of it.
	ahead := srv.now().AddDate(0, 0, 2).In(fund.Shanghai).Format(time.DateOnly)
	if err := srv.sweepDay(ctx, task(ahead)); err == nil {
		t.Fatal("a sweep ran before its day")
	}
	if err := srv.yieldDay(ctx, timer.Task{Kind: taskYieldDay, Key: ahead, Due: srv.now(), Attempts: 1}); err == nil {
		t.Fatal("a day's yield ran before its day")
	}
	var planned int
	if err := srv.pool.QueryRow(ctx, `SELECT count(*) FROM timer_tasks WHERE starts_with(key, $1)`, ahead).Scan(&planned); err != nil || planned != 0 {
		t.Fatalf("%d tasks planned for a day not begun (%v)", planned, err)
	}
	if err := srv.sweepDay(ctx, task("2026-10-01")); err != nil {
		t.Fatal(err)
	}
	if card, _ := l.Card(ctx, pan, time.Time{}); card.Balance() != 300000 {
		t.Fatalf("a holiday swept: %d", card.Balance())
	}
	if at, ok := due(taskSweepDay, "2026-10-02"); !ok || !at.Equal(task("2026-10-02").Due) {
		t.Fatalf("next day's sweep: %v %v", at, ok)
	}

	if err := srv.sweepDay(ctx, task("2026-09-30")); err != nil {
		t.Fatal(err)
	}
	if card, _ := l.Card(ctx, pan, time.Time{}); card.Balance() != 300000 {
		t.Fatalf("swept before its batch ran: %d", card.Balance())
	}
	if n := runPending(t, srv, taskSweepBatch, srv.sweepBatch); n != 1 {
		t.Fatalf("%d sweep batches for one card", n)
	}
	if card, _ := l.Card(ctx, pan, time.Time{}); card.Balance() != 100000 {
		t.Fatalf("after the trading day's sweep: %d", card.Balance())
	}
	id := fund.SweepID(c.ID, time.Date(2026, 9, 30, 0, 0, 0, 0, time.UTC))
	at, ok := due(taskSweepConfirm, id)
	want, _ := fund.At(time.Date(2026, 10, 8, 0, 0, 0, 0, time.UTC), "09:30", fund.Shanghai)
	if !ok || !at.Equal(want) {
		t.Fatalf("confirmation due %v (%v), want %v", at, ok, want)
	}
}

// runPending runs the pending tasks of kind once each, in key order, as
// the timer would, and returns how many there were.
func runPending(t *testing.T, srv *Switch, kind string, h timer.Handler) int {
	t.Helper()
	ctx := context.Background()
	rows, err := srv.pool.Query(ctx, `SELECT key, due_at FROM timer_tasks WHERE kind = $1 AND state = 'pending' ORDER BY key`, kind)
	if err != nil {
		t.Fatal(err)
	}
	var tasks []timer.Task
	for rows.Next() {
		task := timer.Task{Kind: kind, Attempts: 1}
		if err := rows.Scan(&task.Key, &task.Due); err != nil {
			t.Fatal(err)
		}
		tasks = append(tasks, task)
	}
	rows.Close()
	for _, task := range tasks {
		if err := h(ctx, task); err != nil {
			t.Fatalf("%s %s: %v", kind, task.Key, err)
		}
		if _, err := srv.pool.Exec(ctx, `UPDATE timer_tasks SET state = 'done', done_at = now() WHERE kind = $1 AND key = $2`, kind, task.Key); err != nil {
			t.Fatal(err)
		}
	}
	return len(tasks)
}

// TestYieldInBatches: a day's yield is one task per range of cards, and
// the day is closed only once every range has been paid; each card is
// paid once however often its batch runs.
func TestYieldInBatches(t *testing.T) {
	f := config.DefaultFund()
	f.YieldPer10K = "1.0000"
	fundJSON, _ := json.Marshal(f)
	srv, l := newTestSwitch(t, "fund", string(fundJSON))
	srv.cardBatch = 3
	ctx := context.Background()
	const cards = 8
	for i := range cards {
		if _, err := l.CreateCard(ctx, ledger.NewCard{PAN: fmt.Sprintf("62284800000040%02d", i), Currency: "156", FundBalance: 1000000}); err != nil {
			t.Fatal(err)
		}
	}
	day := time.Date(2026, 9, 30, 0, 0, 0, 0, time.UTC)
	at, _ := fund.At(day, "23:00", fund.Shanghai)
	if err := srv.yieldDay(ctx, timer.Task{Kind: taskYieldDay, Key: day.Format(time.DateOnly), Due: at, Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	// Not closed before its batches have run.
	var closeTask timer.Task
	if err := srv.pool.QueryRow(ctx, `SELECT key FROM timer_tasks WHERE kind = $1`, taskYieldClose).Scan(&closeTask.Key); err != nil {
		t.Fatal(err)
	}
	if err := srv.closeYield(ctx, closeTask); err == nil || !strings.Contains(err.Error(), "3 yield batches not finished") {
		t.Fatalf("closing before the batches ran: %v", err)
	}
	var batch timer.Task
	if err := srv.pool.QueryRow(ctx, `SELECT key FROM timer_tasks WHERE kind = $1 ORDER BY key LIMIT 1`, taskYieldBatch).Scan(&batch.Key); err != nil {
		t.Fatal(err)
	}
	if err := srv.yieldBatch(ctx, batch); err != nil { // a batch run twice pays nobody twice
		t.Fatal(err)
	}
	if n := runPending(t, srv, taskYieldBatch, srv.yieldBatch); n != 3 {
		t.Fatalf("%d batches for %d cards of 3", n, cards)
	}
	if err := srv.closeYield(ctx, closeTask); err != nil {
		t.Fatal(err)
	}
	var paid, rows int64
	if err := srv.pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(amount), 0)::bigint FROM yields WHERE day = $1`, day).Scan(&rows, &paid); err != nil {
		t.Fatal(err)
	}
	if want := cards * ledger.YieldOf(1000000, 10000); rows != cards || paid != want || want == 0 {
		t.Fatalf("%d cards paid %d, want %d paid %d", rows, paid, cards, want)
	}
	var closed int
	if err := srv.pool.QueryRow(ctx, `SELECT count(*) FROM yield_days WHERE day = $1`, day).Scan(&closed); err != nil || closed != 1 {
		t.Fatalf("yield days booked: %d %v", closed, err)
	}
}

// newTestSwitch is a switch on a fresh database with the default bank and
// extra config keys, not started: its tasks are run by the test.
func newTestSwitch(t *testing.T, kvs ...string) (*Switch, *ledger.Ledger) {
	t.Helper()
	l, pool := ledgertest.New(t)
	snap := configtest.Snapshot(t, config.DefaultBank("127.0.0.1:0"), kvs...)
	srv, err := New(context.Background(), Parts{Config: config.NewStore(snap), Pool: pool, Log: slog.New(slog.DiscardHandler), KEK: ledgertest.KEK})
	if err != nil {
		t.Fatal(err)
	}
	return srv, l
}
