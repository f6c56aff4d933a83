package daemon

import (
	"context"
	"errors"
	"fmt"
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
	taskSweepConfirm = "sweep.confirm" // key: sweep id
	taskYieldDay     = "yield.day"     // key: the date, recurring
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
	s.timer.HandleFor(taskSweepDay, 10*time.Minute, s.sweepDay)
	s.timer.Handle(taskSweepConfirm, s.confirmSweep)
	s.timer.HandleFor(taskYieldDay, 10*time.Minute, s.yieldDay)
	s.timer.Handle(taskProbe, s.probe)
	// Every kind's series exist from the start, at zero.
	for _, kind := range []string{taskOrderCheck, taskHoldsExpire, taskSweepDay, taskSweepConfirm, taskYieldDay, taskProbe} {
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

// sweepDay sweeps cards on a trading day, then schedules the next day's.
func (s *Switch) sweepDay(ctx context.Context, task timer.Task) error {
	snap := s.cfg.Load()
	zone := sweepZone(snap)
	day, err := time.Parse(time.DateOnly, task.Key)
	if err != nil {
		return fmt.Errorf("sweep day %q: %w", task.Key, err)
	}
	cal, err := calendarOf(snap)
	if err != nil {
		return err
	}
	if cal.TradingDay(day) {
		plan := fund.SweepPlan{Day: day, ConfirmOn: cal.NextTradingDay(day), Threshold: snap.Sweep.Threshold, MinSweep: snap.Sweep.MinSweep}
		n, err := fund.SweepDay(ctx, s.ledger, s.fund, plan, func(ctx context.Context, sw ledger.SweepRecord) error {
			at, err := fund.At(sw.ConfirmOn, snap.Sweep.ConfirmTime, zone)
			if err != nil {
				return err
			}
			_, err = s.timer.Schedule(ctx, taskSweepConfirm, sw.ID, at, nil)
			return err
		})
		if err != nil {
			return err
		}
		s.log.Info("sweep done", "day", task.Key, "cards", n)
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

// yieldDay posts a day's fund income, then schedules the next day's.
func (s *Switch) yieldDay(ctx context.Context, task timer.Task) error {
	snap := s.cfg.Load()
	day, err := time.Parse(time.DateOnly, task.Key)
	if err != nil {
		return fmt.Errorf("yield day %q: %w", task.Key, err)
	}
	rate, err := snap.Fund.YieldRate()
	if err != nil {
		return err
	}
	days, err := fund.YieldDay(ctx, s.ledger, day, rate)
	if err != nil {
		return err
	}
	for _, d := range days {
		s.log.Info("yield posted", "day", task.Key, "currency", d.Currency, "shares", d.Shares, "income", d.Income, "paid", d.Paid, "remainder", d.Remainder)
	}
	next, at, err := nextAt(task.Due, day.AddDate(0, 0, 1), snap.Fund.YieldTime, fund.Shanghai)
	if err != nil {
		return err
	}
	_, err = s.timer.Schedule(ctx, taskYieldDay, next.Format(time.DateOnly), at, nil)
	return err
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
