package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/fund"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
)

// original decides an authorisation (0100: holds) or a financial request
// (0200: postings). A debit the card's cash cannot cover is covered from
// its fund when the fund and the day's quota allow (see shortfall).
func (p *processor) original(ctx context.Context, bank *config.Bank, r *iso.Request, lim config.Limits, build func(outcome) ([]byte, error)) (reply, error) {
	now := p.now()
	f := ledger.Find{Key: keyOf(bank, r), Serial: serialOf(bank, r), CheckReversed: true, RRN: r.RRN, PAN: r.PAN, Day: fund.Day(now)}
	pl := func(_ bookTx, lk *ledger.Lookup) (outcome, ledger.Record, []ledger.Effect, error) {
		o, effects := decideOriginal(r, lk, now, lim)
		var need *needsRedemption
		if errors.As(o.err, &need) {
			if p.redeemer != nil {
				return o, ledger.Record{}, nil, need
			}
			o.err = ledger.ErrInsufficientFunds
		}
		return o, record(bank, r, o), effects, nil
	}
	rep, err := p.decide(ctx, f, r, pl, build)
	var need *needsRedemption
	if errors.As(err, &need) {
		return p.shortfall(ctx, bank, f, r, lim, pl, need, build)
	}
	return rep, err
}

// needsRedemption is a debit whose shortfall the card's fund and the
// day's quota can cover.
type needsRedemption struct {
	card   *ledger.Card
	amount int64 // the shortfall: the debit less the available balance
}

func (n *needsRedemption) Error() string {
	return fmt.Sprintf("shortfall of %d to redeem from the fund", n.amount)
}

// decideOriginal is the pure decision on an authorisation or financial
// request whose card is locked in lk.
func decideOriginal(r *iso.Request, lk *ledger.Lookup, now time.Time, lim config.Limits) (outcome, []ledger.Effect) {
	c := lk.Card
	o := outcome{card: c}
	if lk.ReversedBy != 0 {
		o.err = errReversedBefore
		return o, []ledger.Effect{ledger.LinkReversal(lk.ReversedBy)}
	}
	if err := checkCard(r, c, now); err != nil {
		o.err = err
		return o, nil
	}
	var (
		effects []ledger.Effect
		err     error
	)
	switch {
	case r.TxnType == iso.TxnBalance:
	case r.Amount <= 0 && (isDebit(r.TxnType) || isCredit(r.TxnType)):
		err = errInvalidAmount
	case overTxnLimit(r, lim):
		err = errOverTxnLimit
	case r.Class == iso.ClassAuthorization && isDebit(r.TxnType):
		var hold ledger.Effect
		if hold, err = c.PlaceHold(r.Amount, now.Add(lim.HoldValidity.D())); err == nil {
			effects = []ledger.Effect{hold}
		}
	case r.Class == iso.ClassFinancial && isDebit(r.TxnType):
		effects, err = c.Debit(txnName(r.TxnType), r.Amount)
	case r.Class == iso.ClassFinancial && isCredit(r.TxnType):
		effects = c.Credit(txnName(r.TxnType), r.Amount)
	default:
		err = errInvalidTransaction
	}
	if errors.Is(err, ledger.ErrInsufficientFunds) {
		err = coverFromFund(c, r.Amount, lim)
	}
	if err != nil {
		o.err = err
		return o, nil
	}
	o.authCode = newAuthCode()
	return o, effects
}

// overTxnLimit reports a debit over the per-transaction cap of its kind:
// ATM cash or purchase.
func overTxnLimit(r *iso.Request, lim config.Limits) bool {
	switch r.TxnType {
	case iso.TxnCash:
		return lim.ATMPerTxn > 0 && r.Amount > lim.ATMPerTxn
	case iso.TxnPurchase:
		return lim.POSPerTxn > 0 && r.Amount > lim.POSPerTxn
	}
	return false
}

// coverFromFund says whether a debit the cash cannot cover can be covered
// by redeeming the shortfall: 51 when the fund is short, 61 when only the
// day's quota is.
func coverFromFund(c *ledger.Card, amount int64, lim config.Limits) error {
	// A redemption lands in the card repaying what it owes first, so the
	// shortfall is measured against the available balance net of debt.
	short := amount - c.Available()
	switch {
	case c.Fund < short:
		return ledger.ErrInsufficientFunds
	case lim.RedemptionQuota-c.RedeemedToday < short:
		return errOverQuota
	}
	return &needsRedemption{card: c, amount: short}
}

// checkCard refuses requests the card cannot take whatever its balance.
func checkCard(r *iso.Request, c *ledger.Card, now time.Time) error {
	switch {
	case c == nil:
		return ledger.ErrUnknownCard
	case c.Status != ledger.StatusActive:
		return errBlocked
	case r.Currency != "" && r.Currency != c.Currency:
		return errWrongCurrency
	case r.Expiry != "" && r.Expiry < now.Format("0601"):
		return errExpired
	}
	return nil
}

// advice records a completion or advice (0120, 0220): it captures the
// authorisation's hold, or posts directly when there is none. The acquirer
// has already acted, so an advice is never declined for funds.
func (p *processor) advice(ctx context.Context, bank *config.Bank, r *iso.Request, build func(outcome) ([]byte, error)) (reply, error) {
	f := ledger.Find{Key: keyOf(bank, r), Serial: serialOf(bank, r), CheckReversed: true, RRN: r.RRN, PAN: r.PAN}
	return p.decide(ctx, f, r, func(tx bookTx, lk *ledger.Lookup) (outcome, ledger.Record, []ledger.Effect, error) {
		c := lk.Card
		o := outcome{card: c}
		if lk.ReversedBy != 0 {
			// Its reversal came first: acknowledge, move nothing.
			return o, record(bank, r, o), []ledger.Effect{ledger.LinkReversal(lk.ReversedBy)}, nil
		}
		if c == nil {
			o.err = ledger.ErrUnknownCard
			return o, record(bank, r, o), nil, nil
		}
		if r.TxnType == iso.TxnBalance {
			return o, record(bank, r, o), nil, nil
		}
		if !isDebit(r.TxnType) && !isCredit(r.TxnType) {
			o.err = errInvalidTransaction
			return o, record(bank, r, o), nil, nil
		}
		var auth *ledger.Original
		if isDebit(r.TxnType) {
			var err error
			if auth, err = findAuthorization(ctx, tx, bank, r); err != nil {
				return o, ledger.Record{}, nil, err
			}
		}
		var effects []ledger.Effect
		switch {
		case auth != nil && auth.CardID == c.ID && auth.Hold != nil && auth.Hold.State == ledger.HoldActive:
			if r.Amount == 0 {
				effects = []ledger.Effect{c.ReduceHold(auth.Hold, 0)}
			} else {
				effects = c.CaptureHold(auth.Hold, r.Amount)
			}
		case isDebit(r.TxnType):
			effects = c.ForceDebit(txnName(r.TxnType), r.Amount)
		default:
			effects = c.Credit(txnName(r.TxnType), r.Amount)
		}
		o.authCode = r.AuthCode
		return o, record(bank, r, o), effects, nil
	}, build)
}

// findAuthorization finds the authorisation a completion completes: by
// DE90, else by RRN and STAN, else by RRN alone if its hold is still open.
func findAuthorization(ctx context.Context, tx bookTx, bank *config.Bank, r *iso.Request) (*ledger.Original, error) {
	if k := originalKey(bank, r); k != nil {
		return tx.FindOriginal(ctx, ledger.OriginalRef{Key: k})
	}
	ref := ledger.OriginalRef{Bank: bank.Code, Acquirer: r.Acquirer, RRN: r.RRN, Terminal: r.Terminal, STAN: r.STAN, Classes: []string{"010"}}
	auth, err := tx.FindOriginal(ctx, ref)
	if auth != nil || err != nil {
		return auth, err
	}
	ref.STAN, ref.ActiveHold = "", true
	return tx.FindOriginal(ctx, ref)
}

// reversal undoes an earlier request, fully or down to DE95's actual
// amount. A reversal is acknowledged once recorded: when its original is
// unknown it waits for it, and a second reversal changes nothing.
func (p *processor) reversal(ctx context.Context, bank *config.Bank, r *iso.Request, build func(outcome) ([]byte, error)) (reply, error) {
	if r.Original == nil && r.RRN == "" {
		return reply{}, &iso.FieldError{Field: 90, Reason: "a reversal needs DE90 or DE37 to find its original"}
	}
	f := ledger.Find{Key: keyOf(bank, r), Serial: serialOf(bank, r), PAN: r.PAN}
	return p.decide(ctx, f, r, func(tx bookTx, lk *ledger.Lookup) (outcome, ledger.Record, []ledger.Effect, error) {
		c := lk.Card
		o := outcome{card: c}
		rec := record(bank, r, o)
		var (
			orig *ledger.Original
			err  error
		)
		if k := originalKey(bank, r); k != nil {
			orig, err = tx.FindOriginal(ctx, ledger.OriginalRef{Key: k})
		} else {
			orig, err = tx.FindOriginal(ctx, ledger.OriginalRef{Bank: bank.Code, Acquirer: r.Acquirer, RRN: r.RRN, Terminal: r.Terminal, STAN: r.STAN,
				Classes: []string{"010", "012", "020", "022"}})
		}
		if err != nil {
			return o, rec, nil, err
		}
		if orig == nil || c == nil || orig.CardID != c.ID {
			// Unknown original: remember what it will look like.
			rec.Orig = originalKey(bank, r)
			return o, rec, nil, nil
		}
		if orig.ReversedBy != 0 || !orig.Approved() {
			return o, rec, nil, nil
		}
		rec.Reverses = orig.ID
		return o, rec, reverse(c, orig, r), nil
	}, build)
}

// reverse plans the undoing of an approved original: the part of its
// amount that DE95 does not keep.
func reverse(c *ledger.Card, orig *ledger.Original, r *iso.Request) []ledger.Effect {
	undo := orig.Amount
	if r.Actual != nil {
		undo = orig.Amount - min(*r.Actual, orig.Amount)
	}
	if undo <= 0 {
		return nil
	}
	switch {
	case orig.Hold != nil && orig.Hold.State == ledger.HoldActive:
		return []ledger.Effect{c.ReduceHold(orig.Hold, orig.Hold.Remaining-undo)}
	case orig.Hold != nil:
		// Released or expired: nothing is held any more. Captured: the
		// completion moved the money, and it is the completion that a
		// reversal must name to give it back.
		return nil
	case orig.TxnType == ledger.KindRefund || orig.TxnType == ledger.KindDeposit:
		return c.ForceDebit(ledger.KindReversal, undo)
	case orig.TxnType == ledger.KindPurchase || orig.TxnType == ledger.KindCash:
		return c.Credit(ledger.KindReversal, undo)
	}
	return nil
}
