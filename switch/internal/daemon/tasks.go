package daemon

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/fund"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/internal/timer"
)

// Kinds of timer task.
const (
	taskOrderCheck   = "order.check"   // key: order id
	taskHoldsExpire  = "holds.expire"  // key: the minute, recurring
	taskSweepDay     = "sweep.day"     // key: the date, recurring
	taskSweepBatch   = "sweep.batch"   // key: the date/after-upto (card ids)
	taskSweepConfirm = "sweep.confirm" // key: sweep id
	taskYieldDay     = "yield.day"     // key: the date, recurring
	taskYieldBatch   = "yield.batch"   // key: the date/rate/after-upto (card ids)
	taskYieldClose   = "yield.close"   // key: the date/rate
	taskProbe        = "probe"         // key: anything; for goldcard bench timer
)

// followUps schedule orders' checks on the timer, for the issuer.
type followUps struct{ t *timer.Timer }

func (f followUps) FollowUp(ctx context.Context, orderID string, at time.Time) error {
	_, err := f.t.Schedule(ctx, taskOrderCheck, orderID, at, nil)
	return err
}

// registerTasks gives the timer its handlers.
func (s *Switch) registerTasks() {
	s.timer.Handle(taskOrderCheck, s.checkOrder)
	s.timer.Handle(taskHoldsExpire, s.expireHolds)
	s.timer.Handle(taskSweepDay, s.sweepDay)
	s.timer.HandleFor(taskSweepBatch, 2*time.Minute, s.sweepBatch)
	s.timer.Handle(taskSweepConfirm, s.confirmSweep)
	s.timer.Handle(taskYieldDay, s.yieldDay)
	s.timer.HandleFor(taskYieldBatch, 2*time.Minute, s.yieldBatch)
	s.timer.Handle(taskYieldClose, s.closeYield)
	s.timer.Handle(taskProbe, s.probe)
	s.timer.HandleFor(taskReseal, 2*time.Minute, s.reseal)
	// A day's batches run a few at a time: the database keeps room for
	// debits, and the workers for every other task.
	s.timer.Limit(taskSweepBatch, sweepBatchesAtOnce)
	s.timer.Limit(taskYieldBatch, yieldBatchesAtOnce)
	// Every kind's series exist from the start, at zero.
	for _, kind := range []string{taskOrderCheck, taskHoldsExpire, taskSweepDay, taskSweepBatch, taskSweepConfirm, taskYieldDay, taskYieldBatch, taskYieldClose, taskProbe, taskReseal} {
		s.m.timerRetries.WithLabelValues(kind)
		s.m.timerDead.WithLabelValues(kind)
	}
}

// lead is a term as the timer's leader: the recurring tasks are made sure
// of, then tasks fire until the term ends.
func (s *Switch) lead(ctx context.Context, token int64) {
	s.m.leaderChanges.Inc()
	s.log.Info("leading the timer", "token", token)
	if err := s.ensureRecurring(ctx); err != nil {
		s.log.Error("scheduling the recurring tasks", "err", err)
	}
	go s.keepResealing(ctx)
	if err := s.timer.Lead(ctx, token); err != nil && ctx.Err() == nil {
		s.log.Error("timer stopped", "err", err)
	}
}

// ensureRecurring schedules the next run of every recurring task, and a
// follow-up of every pending order (idempotent: existing ones stay).
func (s *Switch) ensureRecurring(ctx context.Context) error {
	now := s.now()
	snap := s.cfg.Load()
	var errs []error
	_, err := s.timer.Schedule(ctx, taskHoldsExpire, minuteKey(now), now, nil)
	errs = append(errs, err)
	if day, at, err := nextAt(now, fund.DayIn(now, sweepZone(snap)), snap.Sweep.Time, sweepZone(snap)); err == nil {
		_, err = s.timer.Schedule(ctx, taskSweepDay, day.Format(time.DateOnly), at, nil)
		errs = append(errs, err)
	}
	if day, at, err := nextAt(now, fund.Day(now), snap.Fund.YieldTime, fund.Shanghai); err == nil {
		_, err = s.timer.Schedule(ctx, taskYieldDay, day.Format(time.DateOnly), at, nil)
		errs = append(errs, err)
	}
	ids, err := s.ledger.PendingOrders(ctx)
	errs = append(errs, err)
	for _, id := range ids {
		_, err := s.timer.Schedule(ctx, taskOrderCheck, id, now, nil)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// nextAt returns the first day, from today, whose clock time in zone is
// still ahead of now, with that instant.
func nextAt(now, today time.Time, clock string, zone *time.Location) (time.Time, time.Time, error) {
	for day := today; ; day = day.AddDate(0, 0, 1) {
		at, err := fund.At(day, clock, zone)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		if at.After(now) || day.After(today) {
			return day, at, nil
		}
	}
}

func minuteKey(t time.Time) string { return t.UTC().Format("2006-01-02T15:04") }

func sweepZone(snap *config.Snapshot) *time.Location {
	if z, err := time.LoadLocation(snap.Sweep.TimeZone); err == nil {
		return z
	}
	return fund.Shanghai
}

// later runs a task again after a wait that grows with its attempts, up
// to a minute: orders and sweeps are followed up until they settle.
func later(task timer.Task, err error) error {
	return timer.Again(min(time.Second<<min(task.Attempts, 6), time.Minute), err.Error())
}

// checkOrder follows up a redemption order.
func (s *Switch) checkOrder(ctx context.Context, task timer.Task) error {
	timeout := s.cfg.Load().Fund.CallTimeout.D()
	err := fund.CheckOrder(ctx, s.ledger, s.fund, task.Key, timeout)
	if err == nil {
		if o, oerr := s.ledger.Order(ctx, task.Key); oerr == nil && o.State != ledger.OrderPending {
			s.issuer.Settled(o.State)
		}
		return nil
	}
	return later(task, err)
}

// expireHolds releases the holds past their validity, then schedules the
// next minute's run.
func (s *Switch) expireHolds(ctx context.Context, task timer.Task) error {
	for {
		n, err := s.ledger.ExpireHolds(ctx, 100)
		if err != nil {
			return err
		}
		s.m.holdsExpired.Add(float64(n))
		if n > 0 {
			s.log.Info("expired holds released", "holds", n)
		}
		if n == 0 {
			break
		}
	}
	next := task.Due.Truncate(time.Minute).Add(time.Minute)
	_, err := s.timer.Schedule(ctx, taskHoldsExpire, minuteKey(next), next, nil)
	return err
}

// cardBatch is how many cards one task of the daily sweep or yield works
// on: a million cards are a thousand tasks, each claimed, retried and
// spread like any, none holding a claim for long.
const cardBatch = 1000

// sweepBatchesAtOnce bounds the sweep's batches running at once: with a
// page's 32 subscriptions at once, 256 calls to the fund company in flight
// at most. yieldBatchesAtOnce bounds the yield's, which are the
// database's work alone.
const (
	sweepBatchesAtOnce = 8
	yieldBatchesAtOnce = 4
)

// batchKeys are the keys of one day's batch tasks, prefix then the card id
// range of each ("after-upto").
func (s *Switch) batchKeys(ctx context.Context, prefix string) ([]string, error) {
	size := s.cardBatch
	if size <= 0 {
		size = cardBatch
	}
	bounds, err := s.ledger.CardBatches(ctx, size)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(bounds)+1)
	after := int64(0)
	for _, b := range append(bounds, math.MaxInt64) {
		keys = append(keys, fmt.Sprintf("%s%d-%d", prefix, after, b))
		after = b
	}
	return keys, nil
}

// cardRange reads the card id range at the end of a batch task's key.
func cardRange(key string) (after, upTo int64, err error) {
	i := strings.LastIndexByte(key, '/')
	a, b, ok := strings.Cut(key[i+1:], "-")
	if ok {
		if after, err = strconv.ParseInt(a, 10, 64); err == nil {
			upTo, err = strconv.ParseInt(b, 10, 64)
		}
	}
	if !ok || err != nil || after >= upTo {
		return 0, 0, fmt.Errorf("batch task key %q: want .../after-upto", key)
	}
	return after, upTo, nil
}

// scheduleBatches schedules a batch task of kind for every range of cards,
// due now. Scheduling them again (the day's task run twice) schedules
// nothing twice.
func (s *Switch) scheduleBatches(ctx context.Context, kind, prefix string, due time.Time) (int, error) {
	keys, err := s.batchKeys(ctx, prefix)
	if err != nil {
		return 0, err
	}
	items := make([]timer.Item, len(keys))
	for i, k := range keys {
		items[i] = timer.Item{Kind: kind, Key: k, Due: due}
	}
	if _, err := s.timer.ScheduleMany(ctx, items); err != nil {
		return 0, err
	}
	return len(items), nil
}

// sweepDay plans a trading day's sweep, one batch task per range of
// cards, then schedules the next day's.
func (s *Switch) sweepDay(ctx context.Context, task timer.Task) error {
	snap := s.cfg.Load()
	zone := sweepZone(snap)
	day, err := time.Parse(time.DateOnly, task.Key)
	if err != nil {
		return fmt.Errorf("sweep day %q: %w", task.Key, err)
	}
	if early := notYet(s.now(), day, snap.Sweep.Time, zone); early != nil {
		return early
	}
	cal, err := calendarOf(snap)
	if err != nil {
		return err
	}
	if cal.TradingDay(day) {
		n, err := s.scheduleBatches(ctx, taskSweepBatch, task.Key+"/", s.now())
		if err != nil {
			return err
		}
		s.log.Info("sweep planned", "day", task.Key, "batches", n)
	} else {
		s.log.Info("no sweep: not a trading day", "day", task.Key)
	}
	next, at, err := nextAt(task.Due, day.AddDate(0, 0, 1), snap.Sweep.Time, zone)
	if err != nil {
		return err
	}
	_, err = s.timer.Schedule(ctx, taskSweepDay, next.Format(time.DateOnly), at, nil)
	return err
}

// notYet keeps a day's task from running before its day has begun where
// it is kept (made due early by an operator, say): no card is swept, or
// paid a day's income, ahead of the day. Once its day has begun it may run
// early; refused, it goes back to its time of day (clock).
func notYet(now, day time.Time, clock string, zone *time.Location) error {
	if !day.After(fund.DayIn(now, zone)) {
		return nil
	}
	at, err := fund.At(day, clock, zone)
	if err != nil {
		return err
	}
	return timer.Again(max(at.Sub(now), time.Second), day.Format(time.DateOnly)+" has not begun")
}

// sweepBatch sweeps one range of cards on the day of its key, and
// schedules each subscription's confirmation on the next trading day.
func (s *Switch) sweepBatch(ctx context.Context, task timer.Task) error {
	snap := s.cfg.Load()
	zone := sweepZone(snap)
	dayKey, _, _ := strings.Cut(task.Key, "/")
	day, err := time.Parse(time.DateOnly, dayKey)
	if err != nil {
		return fmt.Errorf("sweep batch %q: %w", task.Key, err)
	}
	after, upTo, err := cardRange(task.Key)
	if err != nil {
		return err
	}
	cal, err := calendarOf(snap)
	if err != nil {
		return err
	}
	plan := fund.SweepPlan{Day: day, ConfirmOn: cal.NextTradingDay(day), Threshold: snap.Sweep.Threshold, MinSweep: snap.Sweep.MinSweep}
	n, err := fund.SweepRange(ctx, s.ledger, s.fund, plan, after, upTo, func(ctx context.Context, sweeps []ledger.SweepRecord) error {
		items := make([]timer.Item, len(sweeps))
		for i, sw := range sweeps {
			at, err := fund.At(sw.ConfirmOn, snap.Sweep.ConfirmTime, zone)
			if err != nil {
				return err
			}
			items[i] = timer.Item{Kind: taskSweepConfirm, Key: sw.ID, Due: at}
		}
		_, err := s.timer.ScheduleMany(ctx, items)
		return err
	})
	if err != nil {
		return later(task, err)
	}
	if n > 0 {
		s.log.Info("sweep batch done", "batch", task.Key, "cards", n)
	}
	return nil
}

// confirmSweep confirms a sweep's subscription on its next trading day.
func (s *Switch) confirmSweep(ctx context.Context, task timer.Task) error {
	snap := s.cfg.Load()
	err := fund.ConfirmSweep(ctx, s.ledger, s.fund, task.Key, fund.DayIn(s.now(), sweepZone(snap)), snap.Fund.CallTimeout.D())
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fund.ErrTooEarly):
		return timer.Again(time.Hour, "confirmation day not come")
	}
	return later(task, err)
}

// yieldDay plans a day's fund income: one batch task per range of cards
// at the rate of the config now, and the task that closes the day once
// they have all run; then it schedules the next day's.
func (s *Switch) yieldDay(ctx context.Context, task timer.Task) error {
	snap := s.cfg.Load()
	day, err := time.Parse(time.DateOnly, task.Key)
	if err != nil {
		return fmt.Errorf("yield day %q: %w", task.Key, err)
	}
	if early := notYet(s.now(), day, snap.Fund.YieldTime, fund.Shanghai); early != nil {
		return early
	}
	rate, err := snap.Fund.YieldRate()
	if err != nil {
		return err
	}
	if rate > 0 {
		prefix := fmt.Sprintf("%s/%d/", task.Key, rate)
		n, err := s.scheduleBatches(ctx, taskYieldBatch, prefix, s.now())
		if err != nil {
			return err
		}
		if _, err := s.timer.Schedule(ctx, taskYieldClose, strings.TrimSuffix(prefix, "/"), s.now(), nil); err != nil {
			return err
		}
		s.log.Info("yield planned", "day", task.Key, "rate", rate, "batches", n)
	}
	next, at, err := nextAt(task.Due, day.AddDate(0, 0, 1), snap.Fund.YieldTime, fund.Shanghai)
	if err != nil {
		return err
	}
	_, err = s.timer.Schedule(ctx, taskYieldDay, next.Format(time.DateOnly), at, nil)
	return err
}

// yieldKey reads the day and rate a yield task's key starts with.
func yieldKey(key string) (day time.Time, rate int64, err error) {
	parts := strings.SplitN(key, "/", 3)
	if len(parts) < 2 {
		return time.Time{}, 0, fmt.Errorf("yield task key %q: want date/rate...", key)
	}
	if day, err = time.Parse(time.DateOnly, parts[0]); err == nil {
		rate, err = strconv.ParseInt(parts[1], 10, 64)
	}
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("yield task key %q: %w", key, err)
	}
	return day, rate, nil
}

// yieldBatch pays one range of cards their day's income.
func (s *Switch) yieldBatch(ctx context.Context, task timer.Task) error {
	day, rate, err := yieldKey(task.Key)
	if err != nil {
		return err
	}
	after, upTo, err := cardRange(task.Key)
	if err != nil {
		return err
	}
	if err := fund.YieldRange(ctx, s.ledger, day, rate, after, upTo); err != nil {
		return later(task, err)
	}
	return nil
}

// closeYield books the day's income once every batch of it has run: what
// was paid, and what the roundings left. A batch parked as dead keeps the
// day open until an operator has seen to it.
func (s *Switch) closeYield(ctx context.Context, task timer.Task) error {
	day, rate, err := yieldKey(task.Key)
	if err != nil {
		return err
	}
	n, err := s.timer.Unfinished(ctx, taskYieldBatch, task.Key+"/")
	if err != nil {
		return later(task, err)
	}
	if n > 0 {
		return timer.Again(5*time.Second, fmt.Sprintf("%d yield batches not finished", n))
	}
	days, err := s.ledger.CloseYieldDay(ctx, day, rate)
	if err != nil {
		return later(task, err)
	}
	for _, d := range days {
		s.log.Info("yield posted", "day", day.Format(time.DateOnly), "currency", d.Currency, "shares", d.Shares, "income", d.Income, "paid", d.Paid, "remainder", d.Remainder)
	}
	return nil
}

// probe records that a probe task ran, and how often.
func (s *Switch) probe(ctx context.Context, task timer.Task) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO timer_probes (key, due_at, fired_at) VALUES ($1, $2, now())
		ON CONFLICT (key) DO UPDATE SET runs = timer_probes.runs + 1`, task.Key, task.Due)
	return err
}

// calendarOf is the trading calendar of a config.
func calendarOf(snap *config.Snapshot) (fund.Calendar, error) {
	holidays := map[int][]string{}
	for year, c := range snap.Calendar {
		holidays[year] = c.Holidays
	}
	return fund.NewCalendar(holidays)
}

// timerMetrics reports the timer's work.
type timerMetrics struct{ m *metrics }

func (t timerMetrics) Fired(kind string, late time.Duration) {
	t.m.timerLateness.WithLabelValues(kind).Observe(late.Seconds())
}
func (t timerMetrics) Retried(kind string) { t.m.timerRetries.WithLabelValues(kind).Inc() }
func (t timerMetrics) Dead(kind string)    { t.m.timerDead.WithLabelValues(kind).Inc() }
func (t timerMetrics) Leading(on bool) {
	if on {
		t.m.timerLeader.Set(1)
	} else {
		t.m.timerLeader.Set(0)
	}
}
