package fund

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
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
// called with each page's so that they can be confirmed on the next
// trading day.
func SweepDay(ctx context.Context, l *ledger.Ledger, p Provider, plan SweepPlan, confirm func(ctx context.Context, s []ledger.SweepRecord) error) (int, error) {
	return SweepRange(ctx, l, p, plan, 0, math.MaxInt64, confirm)
}

// cardPage is how many cards one transaction of a sweep or a yield locks
// and writes, in a few statements: large enough that a million cards are
// few transactions, small enough that a debit waiting for one of its
// cards waits a few milliseconds.
const cardPage = 100

// subscribeAtOnce bounds the subscriptions of one sweep batch sent to the
// fund company at once.
const subscribeAtOnce = 32

// SweepRange is SweepDay for the cards whose id is in (after, upTo]: one
// batch of a day's sweep, a page of cards per transaction.
func SweepRange(ctx context.Context, l *ledger.Ledger, p Provider, plan SweepPlan, after, upTo int64, confirm func(ctx context.Context, s []ledger.SweepRecord) error) (int, error) {
	// What an earlier run of the range made and may not have sent or
	// scheduled (it failed between), even for a card since blocked or no
	// longer sweeping, is sent and scheduled first.
	earlier, err := l.PendingSweeps(ctx, plan.Day, after, upTo)
	if err != nil {
		return 0, err
	}
	if err := sendSweeps(ctx, p, earlier, confirm); err != nil {
		return 0, err
	}
	swept := len(earlier)
	for {
		page, err := l.SweepCards(ctx, after, cardPage)
		if err != nil {
			return swept, err
		}
		if i := slices.IndexFunc(page, func(sc ledger.SweepCard) bool { return sc.ID > upTo }); i >= 0 {
			page = page[:i]
		}
		if len(page) == 0 {
			return swept, nil
		}
		after = page[len(page)-1].ID
		pending, err := sweepPage(ctx, l, page, plan)
		if err != nil {
			return swept, fmt.Errorf("sweeping cards %d-%d: %w", page[0].ID, after, err)
		}
		swept += len(pending)
		if err := sendSweeps(ctx, p, pending, confirm); err != nil {
			return swept, err
		}
	}
}

// sendSweeps sends the fund company each subscription, subscribeAtOnce at
// a time, then has their confirmations scheduled. Sending is best effort:
// the confirmation asks again if one is lost.
func sendSweeps(ctx context.Context, p Provider, sweeps []ledger.SweepRecord, confirm func(ctx context.Context, s []ledger.SweepRecord) error) error {
	if len(sweeps) == 0 {
		return nil
	}
	var wg sync.WaitGroup
	slots := make(chan struct{}, subscribeAtOnce)
	for _, s := range sweeps {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, _ = p.Subscribe(sctx, Order{ID: s.ID, Account: Account(s.CardID), Amount: s.Amount, Currency: s.Currency})
		})
	}
	wg.Wait()
	return confirm(ctx, sweeps)
}

// sweepPage sweeps a page of cards in one transaction, and returns the
// sweeps it made (those made before were sent by SweepRange first).
func sweepPage(ctx context.Context, l *ledger.Ledger, page []ledger.SweepCard, plan SweepPlan) ([]ledger.SweepRecord, error) {
	threshold := make(map[int64]int64, len(page))
	ids := make([]int64, len(page))
	for i, sc := range page {
		ids[i], threshold[sc.ID] = sc.ID, plan.Threshold
		if sc.Threshold != nil {
			threshold[sc.ID] = *sc.Threshold
		}
	}
	var pending []ledger.SweepRecord
	err := l.Do(ctx, func(tx *ledger.Tx) error {
		pending = pending[:0]
		cards, err := tx.LockCardsByID(ctx, ids)
		if err != nil {
			return err
		}
		ns := make([]ledger.NewSweep, len(cards))
		for i, c := range cards {
			ns[i] = ledger.NewSweep{ID: SweepID(c.ID, plan.Day), Day: plan.Day, ConfirmOn: plan.ConfirmOn, Threshold: threshold[c.ID], MinSweep: plan.MinSweep}
		}
		sweeps, err := tx.SweepMany(ctx, cards, ns)
		for _, s := range sweeps {
			if s != nil && s.Made {
				pending = append(pending, *s)
			}
		}
		return err
	})
	return pending, err
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
	return settleSweep(ctx, l, s.CardID, s.ID, st.State == Confirmed)
}

// settleSweep ends a pending sweep as the fund company says it ended:
// the subscription confirmed into the card's fund, or refused and its
// cash given back. A sweep already ended is left as it is.
func settleSweep(ctx context.Context, l *ledger.Ledger, cardID int64, id string, confirmed bool) error {
	return l.Do(ctx, func(tx *ledger.Tx) error {
		c, err := tx.LockCardByID(ctx, cardID, time.Time{})
		if err != nil || c == nil {
			return err
		}
		_, err = tx.ResolveSweep(ctx, c, id, confirmed)
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
		ids, err := l.YieldCards(ctx, after, cardPage)
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(ids, func(id int64) bool { return id > upTo }); i >= 0 {
			ids = ids[:i]
		}
		if len(ids) == 0 {
			return nil
		}
		after = ids[len(ids)-1]
		err = l.Do(ctx, func(tx *ledger.Tx) error {
			cards, err := tx.LockCardsByID(ctx, ids)
			if err != nil {
				return err
			}
			_, err = tx.PostYields(ctx, cards, day, rate)
			return err
		})
		if err != nil {
			return fmt.Errorf("yield of cards %d-%d: %w", ids[0], after, err)
		}
	}
}
