package fund

import (
	"context"
	"errors"
	"time"

	"github.com/goldcard/goldcard/ledger"
)

// ErrStillPending is an order or sweep the fund company has not decided.
var ErrStillPending = errors.New("fund: still pending at the fund company")

// CheckOrder follows up a redemption order: it asks the fund company how
// it stands, sends it again (same order id, so it cannot run twice) if the
// fund company never received it, and settles it once decided. It returns
// ErrStillPending while the fund company has not decided.
func CheckOrder(ctx context.Context, l *ledger.Ledger, p Provider, id string, timeout time.Duration) error {
	o, err := l.Order(ctx, id)
	if errors.Is(err, ledger.ErrUnknownOrder) {
		return nil // never placed: its request failed before the order was made
	}
	if err != nil {
		return err
	}
	if o.State != ledger.OrderPending {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := p.RedemptionStatus(cctx, o.ID)
	if errors.Is(err, ErrUnknownOrder) {
		st, err = p.Redeem(cctx, Order{ID: o.ID, Account: Account(o.CardID), Amount: o.Amount, Currency: o.Currency})
	}
	if err == nil && st.State == Pending {
		err = ErrStillPending
	}
	if err != nil {
		if rerr := l.RecordOrderCheck(ctx, o.ID, err.Error()); rerr != nil {
			return rerr
		}
		return err
	}
	return Settle(ctx, l, *o, st)
}
