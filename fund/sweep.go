package fund

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/goldcard/goldcard/ledger"
)

// SweepPlan is one day's sweep as the config has it.
type SweepPlan struct {
	Day       time.Time // the trading day
	ConfirmOn time.Time // the next trading day
	Threshold int64     // kept, unless a card has its own
	MinSweep  int64
}

// SweepDay sweeps every card with sweeping on for the plan's day: each
// card's available balance above its threshold goes into a pending
// subscription, once per card per day (running it again sweeps nothing
// twice). The fund company is sent each subscription, and confirm is
// called for each so that it can be confirmed on the next trading day.
func SweepDay(ctx context.Context, l *ledger.Ledger, p Provider, plan SweepPlan, confirm func(ctx context.Context, s ledger.SweepRecord) error) (int, error) {
	return SweepRange(ctx, l, p, plan, 0, math.MaxInt64, confirm)
}

// SweepRange is SweepDay for the cards whose id is in (after, upTo]: one
// batch of a day's sweep.
func SweepRange(ctx context.Context, l *ledger.Ledger, p Provider, plan SweepPlan, after, upTo int64, confirm func(ctx context.Context, s ledger.SweepRecord) error) (int, error) {
	swept := 0
	for {
		cards, err := l.SweepCards(ctx, after, 500)
		if err != nil {
			return swept, err
		}
		if len(cards) == 0 {
			return swept, nil
		}
		for _, sc := range cards {
			if sc.ID > upTo {
				return swept, nil
			}
			after = sc.ID
			s, err := sweepCard(ctx, l, sc, plan)
			if err != nil {
				return swept, fmt.Errorf("sweeping card %d: %w", sc.ID, err)
			}
			if s == nil || s.State != ledger.SweepPending {
				continue
			}
			swept++
			// Best effort: the confirmation asks again if this is lost.
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, _ = p.Subscribe(sctx, Order{ID: s.ID, Account: Account(s.CardID), Amount: s.Amount, Currency: s.Currency})
			cancel()
			if err := confirm(ctx, *s); err != nil {
				return swept, err
			}
		}
	}
}

func sweepCard(ctx context.Context, l *ledger.Ledger, sc ledger.SweepCard, plan SweepPlan) (*ledger.SweepRecord, error) {
	threshold := plan.Threshold
	if sc.Threshold != nil {
		threshold = *sc.Threshold
	}
	var s *ledger.SweepRecord
	err := l.Do(ctx, func(tx *ledger.Tx) error {
		c, err := tx.LockCardByID(ctx, sc.ID, time.Time{})
		if err != nil || c == nil {
			return err
		}
		s, err = tx.Sweep(ctx, c, ledger.NewSweep{
			ID: SweepID(sc.ID, plan.Day), Day: plan.Day, ConfirmOn: plan.ConfirmOn, Threshold: threshold, MinSweep: plan.MinSweep,
		})
		return err
	})
	return s, err
}

// SweepID names a card's sweep of a day, and the subscription order sent
// for it.
func SweepID(cardID int64, day time.Time) string {
	return fmt.Sprintf("S%s%d", day.Format("20060102"), cardID)
}

// ErrTooEarly is a sweep whose confirmation day has not come.
var ErrTooEarly = errors.New("fund: the sweep confirms on its next trading day")

// ConfirmSweep confirms a pending sweep into the fund once its next
// trading day (today, per Day in zone) has come and the fund company has
// confirmed the subscription, or gives the money back to the card if the
// fund company refused it. It returns ErrTooEarly before the day, and
// ErrStillPending while the fund company has not decided.
func ConfirmSweep(ctx context.Context, l *ledger.Ledger, p Provider, id string, today time.Time, timeout time.Duration) error {
	s, err := l.SweepByID(ctx, id)
	if err != nil {
		return err
	}
	if s.State != ledger.SweepPending {
		return nil
	}
	if today.Before(s.ConfirmOn) {
		return ErrTooEarly
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := p.SubscriptionStatus(cctx, s.ID)
	if errors.Is(err, ErrUnknownOrder) {
		st, err = p.Subscribe(cctx, Order{ID: s.ID, Account: Account(s.CardID), Amount: s.Amount, Currency: s.Currency})
	}
	if err != nil {
		return err
	}
	if st.State == Pending {
		return ErrStillPending
	}
	return l.Do(ctx, func(tx *ledger.Tx) error {
		c, err := tx.LockCardByID(ctx, s.CardID, time.Time{})
		if err != nil || c == nil {
			return err
		}
		_, err = tx.ResolveSweep(ctx, c, s.ID, st.State == Confirmed)
		return err
	})
}

// YieldDay posts the day's income at rate to every card with fund shares,
// once per card, then books what the roundings left.
func YieldDay(ctx context.Context, l *ledger.Ledger, day time.Time, rate int64) ([]ledger.YieldDay, error) {
	if rate <= 0 {
		return nil, nil
	}
	if err := YieldRange(ctx, l, day, rate, 0, math.MaxInt64); err != nil {
		return nil, err
	}
	return l.CloseYieldDay(ctx, day, rate)
}

// YieldRange posts the day's income at rate to the cards with fund shares
// whose id is in (after, upTo], once per card: one batch of a day's yield.
// The day is closed (ledger.CloseYieldDay) once every batch has run.
func YieldRange(ctx context.Context, l *ledger.Ledger, day time.Time, rate int64, after, upTo int64) error {
	if rate <= 0 {
		return nil
	}
	for {
		ids, err := l.YieldCards(ctx, after, 500)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		for _, id := range ids {
			if id > upTo {
				return nil
			}
			after = id
			err := l.Do(ctx, func(tx *ledger.Tx) error {
				c, err := tx.LockCardByID(ctx, id, time.Time{})
				if err != nil || c == nil {
					return err
				}
				_, err = tx.PostYield(ctx, c, day, rate)
				return err
			})
			if err != nil {
				return fmt.Errorf("yield of card %d: %w", id, err)
			}
		}
	}
}
