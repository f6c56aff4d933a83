package issuer

import (
	"context"
	"fmt"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/fund"
	"github.com/goldcard/goldcard/ledger"
)

// TransferOut moves amount of a card's fund to its cash by hand: the same
// order, quota and lock as a shortfall's. It returns the order as it
// stands once the fund company has answered, or ctx has ended (pending).
// The fund short of amount is ledger.ErrInsufficientFunds, the day's
// quota ledger.ErrQuotaExceeded; an issuer without a fund is ErrNoFund.
func (p *Issuer) TransferOut(ctx context.Context, card *ledger.Card, amount int64, lim config.Limits) (*ledger.Order, error) {
	rd := p.redeemer
	if rd == nil {
		return nil, ErrNoFund
	}
	k, lctx, release, err := rd.lock(ctx, card.ID)
	if err != nil {
		return nil, err
	}
	defer release()
	id := newOrderID()
	if err := rd.followUp(lctx, id); err != nil {
		return nil, err
	}
	day := fund.Day(p.now())
	err = rd.ledger.Do(lctx, func(tx *ledger.Tx) error {
		c, err := tx.LockCardByID(lctx, card.ID, day)
		if err != nil {
			return err
		}
		if err := tx.Fence(lctx, c.ID, k.Token()); err != nil {
			return err
		}
		return tx.StartRedemption(lctx, c, ledger.NewRedemption{
			ID: id, Amount: amount, Purpose: ledger.PurposeTransferOut, Day: day, Quota: lim.RedemptionQuota, Fence: k.Token(),
		})
	})
	if err != nil {
		return nil, err
	}
	st, err := rd.redeem(lctx, "admin", id, card, amount, ledger.PurposeTransferOut)
	if err == nil && st.State != fund.Pending {
		if err := fund.Settle(lctx, rd.ledger, ledger.Order{ID: id, CardID: card.ID}, st); err != nil {
			return nil, fmt.Errorf("recording the fund company's answer: %w", err)
		}
	}
	return rd.ledger.Order(context.WithoutCancel(ctx), id)
}
