package issuer

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
//
// A copy that arrived while its original was in the pipeline (joins) is
// decided alone, as one whose first look found nothing: if the original
// was answered it gets that answer, and if it was released (91), that
// too, rather than being decided afresh.
func (p *Issuer) original(ctx context.Context, bank *config.Bank, r *iso.Request, lim config.Limits, build func(decision) ([]byte, error), joins bool) (Answer, error) {
	m := p.newMember(ctx, bank, r, lim, build)
	j := job{f: m.f, r: r, build: build, decide: func(_ bookTx, lk *ledger.Lookup) (decision, ledger.Record, []ledger.Effect, error) {
		return m.decide(lk)
	}}
	if joins {
		j.seen = noPrior
	}
	if p.group != nil && !joins {
		rep, err, alone := p.group.decide(m)
		switch {
		case !alone:
			return rep, err
		case m.need != nil:
			// Its group found nothing stored under its key and a shortfall
			// to redeem: decided again under the card's lock.
			return p.shortfall(ctx, bank, j, lim, m.need)
		}
	}
	rep, err := p.decide(ctx, j)
	var need *needsRedemption
	if errors.As(err, &need) {
		return p.shortfall(ctx, bank, j, lim, need)
	}
	return rep, err
}

// newMember is an original's work, to be decided in a group or alone: a
// debit that needs a redemption is a *needsRedemption when the issuer
// redeems, and declined for funds when it does not.
func (p *Issuer) newMember(ctx context.Context, bank *config.Bank, r *iso.Request, lim config.Limits, build func(decision) ([]byte, error)) *member {
	now := p.now()
	return &member{
		ctx: ctx, r: r, build: build, done: make(chan struct{}),
		f: ledger.Find{Key: keyOf(bank, r), Serial: serialOf(bank, r), CheckReversed: true, Amount: r.Amount, PAN: r.PAN, Day: fund.Day(now)},
		decide: func(lk *ledger.Lookup) (decision, ledger.Record, []ledger.Effect, error) {
			o, effects := decideOriginal(r, lk, now, lim)
			var need *needsRedemption
			if errors.As(o.err, &need) {
				if p.redeemer != nil {
					return o, ledger.Record{}, nil, need
				}
				o.err = ledger.ErrInsufficientFunds
			}
			return o, p.record(bank, r, o), effects, nil
		},
	}
}

// needsRedemption is a debit whose shortfall the card's fund and the
// day's quota can cover.
type needsRedemption struct {
	card   *ledger.Card
	amount int64 // the shortfall: the debit less the available balance
	// seen is what the request found under its key (see job.seen).
	seen *ledger.Prior
}

func (n *needsRedemption) Error() string {
	return fmt.Sprintf("shortfall of %d to redeem from the fund", n.amount)
}

// decideOriginal is the pure decision on an authorisation or financial
// request whose card is locked in lk.
func decideOriginal(r *iso.Request, lk *ledger.Lookup, now time.Time, lim config.Limits) (decision, []ledger.Effect) {
	c := lk.Card
	o := decision{card: c}
	if effects, reversed := reversedBefore(lk); reversed {
		o.err = errReversedBefore
		return o, effects
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

// reversedBefore reports a request whose reversal came first: one waiting
// for it, which it is linked to, or one already settled against it while
// it was released or its decider had gone.
func reversedBefore(lk *ledger.Lookup) ([]ledger.Effect, bool) {
	switch {
	case lk.Waiting != 0:
		return []ledger.Effect{ledger.LinkReversal(lk.Waiting, nil)}, true
	case lk.Prior != nil && lk.Prior.ReversedBy != 0:
		return nil, true
	}
	return nil, false
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
// has already acted, so an advice is never declined for funds; one in a
// currency the card does not hold is acknowledged with 13, posts nothing,
// and becomes an exception for an operator. One whose reversal came first
// posts what that reversal says stands of it.
func (p *Issuer) advice(ctx context.Context, bank *config.Bank, r *iso.Request, build func(decision) ([]byte, error)) (Answer, error) {
	f := ledger.Find{Key: keyOf(bank, r), Serial: serialOf(bank, r), CheckReversed: true, Amount: r.Amount, PAN: r.PAN, Day: fund.Day(p.now())}
	return p.decide(ctx, job{f: f, r: r, build: build, decide: func(tx bookTx, lk *ledger.Lookup) (decision, ledger.Record, []ledger.Effect, error) {
		c := lk.Card
		o := decision{card: c}
		// A reversal that came first says what of it stands: that is
		// what it posts, and the reversal is linked to it with it.
		amount := r.Amount
		var link []ledger.Effect
		if lk.Waiting != 0 {
			amount = min(lk.WaitingStated, r.Amount)
			var stands *int64
			if amount < r.Amount {
				stands = &amount
			}
			link = []ledger.Effect{ledger.LinkReversal(lk.Waiting, stands)}
		}
		if c == nil {
			o.err = ledger.ErrUnknownCard
			return o, p.record(bank, r, o), link, nil
		}
		if r.TxnType == iso.TxnBalance {
			return o, p.record(bank, r, o), link, nil
		}
		if !isDebit(r.TxnType) && !isCredit(r.TxnType) {
			o.err = errInvalidTransaction
			return o, p.record(bank, r, o), link, nil
		}
		if foreignCurrency(r, c) {
			return p.refuseForeign(bank, r, o, link...)
		}
		var auth *ledger.Original
		if isDebit(r.TxnType) {
			var err error
			if auth, err = findAuthorization(ctx, tx, bank, r); err != nil {
				return o, ledger.Record{}, nil, err
			}
			if auth != nil && auth.State == ledger.StateDeciding && !auth.Expired {
				return o, ledger.Record{}, nil, &awaiting{id: auth.ID, original: true, card: c}
			}
		}
		effects := link
		switch {
		case auth != nil && auth.CardID == c.ID && auth.Hold != nil && auth.Hold.State == ledger.HoldActive:
			if amount == 0 {
				effects = append(effects, c.ReduceHold(auth.Hold, 0))
			} else {
				effects = append(effects, c.CaptureHold(auth.Hold, amount)...)
			}
		case isDebit(r.TxnType):
			effects = append(effects, c.ForceDebit(txnName(r.TxnType), amount)...)
		default:
			effects = append(effects, c.Credit(txnName(r.TxnType), amount)...)
		}
		o.authCode = r.AuthCode
		return o, p.record(bank, r, o), effects, nil
	}})
}

// foreignCurrency reports a message in a currency other than the card's.
// There is no exchange: its minor units are never posted as the card's.
func foreignCurrency(r *iso.Request, c *ledger.Card) bool {
	return c != nil && r.Currency != "" && r.Currency != c.Currency
}

// refuseForeign acknowledges an advice or reversal in a currency the card
// does not hold with 13, posting nothing, and records it as an exception:
// the bank believes money moved. Effects also (linking a reversal that
// came first) are written with it.
func (p *Issuer) refuseForeign(bank *config.Bank, r *iso.Request, o decision, also ...ledger.Effect) (decision, ledger.Record, []ledger.Effect, error) {
	o.err = errWrongCurrency
	c := o.card
	detail := fmt.Sprintf("%s %s of %d in currency %s on a card in %s: not posted", r.MTI, txnName(r.TxnType), r.Amount, r.Currency, c.Currency)
	p.log.Warn("message in another currency than the card's: acknowledged with 13, not posted, kept as an exception",
		"bank", bank.Code, "mti", r.MTI, "pan", iso.MaskPAN(r.PAN), "stan", r.STAN, "rrn", r.RRN,
		"amount", r.Amount, "currency", r.Currency, "card_currency", c.Currency)
	o.raised = ledger.ExceptionForeignCurrency
	return o, p.record(bank, r, o), append(also, ledger.RaiseException(ledger.Exception{
		Kind: ledger.ExceptionForeignCurrency, CardID: c.ID, Bank: bank.Code, Currency: r.Currency, Amount: r.Amount, Detail: detail,
	})), nil
}

// findAuthorization finds the authorisation a completion completes: by
// DE90, else by RRN and STAN, else by RRN alone if its hold is still open.
func findAuthorization(ctx context.Context, tx bookTx, bank *config.Bank, r *iso.Request) (*ledger.Original, error) {
	ref := originalRef(bank, r, "010")
	if ref.ByDE90 != nil {
		return tx.FindOriginal(ctx, ref)
	}
	auth, err := tx.FindOriginal(ctx, ref)
	if auth != nil || err != nil {
		return auth, err
	}
	ref.STAN, ref.ActiveHold = "", true
	return tx.FindOriginal(ctx, ref)
}

// reversal undoes an earlier request down to what it says stands: DE95's
// actual amount, or nothing. A reversal is acknowledged once recorded. One
// whose original is known is settled at once: it moves the original to
// what it says stands, never up (what an earlier reversal took off stays
// off), and never below zero. Only one whose original has never been seen
// waits, for that transaction alone (see ledger.Find.CheckReversed).
func (p *Issuer) reversal(ctx context.Context, bank *config.Bank, r *iso.Request, build func(decision) ([]byte, error)) (Answer, error) {
	if r.Original == nil && r.RRN == "" {
		return Answer{}, &iso.FieldError{Field: 90, Reason: "a reversal needs DE90 or DE37 to find its original"}
	}
	f := ledger.Find{Key: keyOf(bank, r), Serial: serialOf(bank, r), PAN: r.PAN, Day: fund.Day(p.now())}
	return p.decide(ctx, job{f: f, r: r, build: build, decide: func(tx bookTx, lk *ledger.Lookup) (decision, ledger.Record, []ledger.Effect, error) {
		c := lk.Card
		o := decision{card: c}
		orig, err := tx.FindOriginal(ctx, originalRef(bank, r, "010", "012", "020", "022"))
		if err != nil {
			return o, ledger.Record{}, nil, err
		}
		rec := p.record(bank, r, o)
		stated := int64(0)
		if r.Actual != nil {
			stated = max(0, *r.Actual)
		}
		rec.Stated = &stated
		switch {
		case orig != nil && orig.State == ledger.StateDeciding && !orig.Expired:
			return o, ledger.Record{}, nil, &awaiting{id: orig.ID, original: true, card: c}
		case orig == nil || orig.State == ledger.StateDeciding:
			// Never seen, or never answered (its decider is gone, and a
			// repeat that decides it afresh finds this reversal waiting).
			if foreignCurrency(r, c) {
				return p.refuseForeign(bank, r, o)
			}
			rec.Waiting, rec.Orig = true, origKey(r)
			return o, rec, nil, nil
		}
		rec.Reverses = orig.ID
		switch {
		case !orig.Approved():
			return o, rec, nil, nil
		case c == nil || orig.CardID != c.ID:
			p.log.Warn("reversal names another card's transaction: acknowledged, nothing moved",
				"bank", bank.Code, "pan", iso.MaskPAN(r.PAN), "stan", r.STAN, "rrn", r.RRN, "original", orig.ID)
			return o, rec, nil, nil
		case foreignCurrency(r, c):
			return p.refuseForeign(bank, r, o)
		}
		stands := standsAfter(orig, r)
		if stands >= orig.Stands {
			return o, rec, nil, nil // an earlier reversal took off as much or more
		}
		rec.Stands = &stands
		return o, rec, reverse(c, orig, orig.Stands-stands), nil
	}})
}

// standsAfter is what of orig a reversal says stands: DE95's actual
// amount, capped at the original, or nothing.
func standsAfter(orig *ledger.Original, r *iso.Request) int64 {
	if r.Actual == nil {
		return 0
	}
	return max(0, min(*r.Actual, orig.Amount))
}

// reverse plans giving back undo of an approved original.
func reverse(c *ledger.Card, orig *ledger.Original, undo int64) []ledger.Effect {
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
