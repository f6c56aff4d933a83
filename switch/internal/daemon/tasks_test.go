package daemon

import (
	"context"
	"log/slog"
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
	if err := l.SetSweep(ctx, pan, true, nil); err != nil {
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

// newTestSwitch is a switch on a fresh database with the default bank and
// extra config keys, not started: its tasks are run by the test.
func newTestSwitch(t *testing.T, kvs ...string) (*Switch, *ledger.Ledger) {
	t.Helper()
	l, pool := ledgertest.New(t)
	snap := configtest.Snapshot(t, config.DefaultBank("127.0.0.1:0"), kvs...)
	srv, err := New(context.Background(), Parts{Config: config.NewStore(snap), Pool: pool, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return srv, l
}
