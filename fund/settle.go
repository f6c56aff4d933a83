package fund

import (
	"context"
	"strconv"
	"time"

	"github.com/goldcard/goldcard/ledger"
)

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
