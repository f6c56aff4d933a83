package fund

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/goldcard/goldcard/ledger"
)

// Reconciler settles redemption orders left pending: it asks the fund
// company how each stands, lands the money of confirmed ones in the card,
// closes refused ones, and sends again an order the fund company never
// received (same order id, so it cannot be executed twice).
type Reconciler struct {
	Ledger   *ledger.Ledger
	Provider Provider
	Log      *slog.Logger
	// Every is how often due orders are looked for (default 1s).
	Every time.Duration
	// CallTimeout bounds one call to the fund company (default 5s).
	CallTimeout time.Duration
	// Resolved, when set, is told each order's outcome.
	Resolved func(o ledger.Order, state State)
}

var errStillPending = errors.New("fund company says pending")

// backoff is the wait before an order's next check after n checks.
func backoff(n int) time.Duration {
	d := time.Second << min(n, 6)
	return min(d, time.Minute)
}

// Run checks due orders until ctx ends.
func (r *Reconciler) Run(ctx context.Context) {
	every := r.Every
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.Log.Warn("checking pending orders", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Pass checks the orders due now and returns how many it resolved.
func (r *Reconciler) Pass(ctx context.Context) (int, error) {
	timeout := r.CallTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	orders, err := r.Ledger.ClaimDueOrders(ctx, 100, 2*timeout+time.Second)
	if err != nil {
		return 0, err
	}
	resolved := 0
	for _, o := range orders {
		ok, err := r.check(ctx, o, timeout)
		if errors.Is(err, errStillPending) {
			r.Log.Debug("order still pending at the fund company", "order", o.ID, "checks", o.Checks+1)
		} else if err != nil {
			r.Log.Warn("order still pending: the fund company did not answer", "order", o.ID, "err", err)
		}
		if err != nil {
			if derr := r.Ledger.DeferOrderCheck(ctx, o.ID, backoff(o.Checks), err.Error()); derr != nil {
				return resolved, derr
			}
			continue
		}
		if ok {
			resolved++
		}
	}
	return resolved, nil
}

// check asks about one order and settles it if the fund company has.
func (r *Reconciler) check(ctx context.Context, o ledger.Order, timeout time.Duration) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := r.Provider.RedemptionStatus(cctx, o.ID)
	if errors.Is(err, ErrUnknownOrder) {
		r.Log.Info("order unknown to the fund company; sending it again", "order", o.ID)
		st, err = r.Provider.Redeem(cctx, Order{ID: o.ID, Account: Account(o.CardID), Amount: o.Amount, Currency: o.Currency})
	}
	if err != nil {
		return false, err
	}
	if st.State == Pending {
		return false, errStillPending
	}
	if err := Settle(ctx, r.Ledger, o, st); err != nil {
		return false, err
	}
	r.Log.Info("pending order settled", "order", o.ID, "state", st.State)
	if r.Resolved != nil {
		r.Resolved(o, st.State)
	}
	return true, nil
}

// Settle records the fund company's final answer on an order: confirmed
// money lands in the card, a refusal gives the shares and quota back.
// Settling an order twice changes nothing.
func Settle(ctx context.Context, l *ledger.Ledger, o ledger.Order, st Status) error {
	return l.Do(ctx, func(tx *ledger.Tx) error {
		c, err := tx.LockCardByID(ctx, o.CardID, time.Time{})
		if err != nil {
			return err
		}
		if c == nil {
			return ledger.ErrUnknownCard
		}
		switch st.State {
		case Confirmed:
			_, err = tx.ConfirmRedemption(ctx, c, o.ID)
		case Failed:
			_, err = tx.FailRedemption(ctx, c, o.ID, st.Reason)
		}
		return err
	})
}

// Account is the fund account the fund company knows a card by.
func Account(cardID int64) string { return "GC" + strconv.FormatInt(cardID, 10) }
