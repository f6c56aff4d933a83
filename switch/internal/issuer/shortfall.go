package issuer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/fund"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/locks"
)

// postingReserve is kept back from the fund company's share of a
// deadline, to post a confirmation that arrives at the last moment.
const postingReserve = 100 * time.Millisecond

// orderCheckAfter is when a pending order is first followed up: its
// request settles it before then if it can.
const orderCheckAfter = 5 * time.Second

// redeemer covers shortfalls from cards' fund positions: under the card's
// etcd lock it places a redemption order, asks the fund company, and posts
// the redemption and the debit together once the fund confirms.
type redeemer struct {
	ledger    *ledger.Ledger
	provider  fund.Provider
	locker    CardLocker
	followUps FollowUps
	m         *metrics
	log       *slog.Logger
}

// followUp schedules the check of an order before it is placed, so that
// no pending order goes unfollowed whatever happens after; a check of an
// order that was never placed does nothing.
func (rd *redeemer) followUp(ctx context.Context, orderID string) error {
	if err := rd.followUps.FollowUp(ctx, orderID, time.Now().Add(orderCheckAfter)); err != nil {
		return fmt.Errorf("%w: scheduling the order's follow-up: %w", ErrUnavailable, err)
	}
	return nil
}

func cardLockKey(cardID int64) string { return "cards/" + strconv.FormatInt(cardID, 10) }

// newOrderID returns a fresh redemption order id.
func newOrderID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "R" + time.Now().UTC().Format("20060102") + hex.EncodeToString(b[:])
}

// lock takes a card's lock and returns it with a context that ends when
// ctx does or the lock is lost.
func (rd *redeemer) lock(ctx context.Context, cardID int64) (*locks.Lock, context.Context, func(), error) {
	start := time.Now()
	k, err := rd.locker.Lock(ctx, cardLockKey(cardID))
	rd.m.lockWait.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: taking the card's lock: %w", ErrUnavailable, err)
	}
	lctx, cancel := k.Context(ctx)
	// Released in the background: the answer to the bank does not wait
	// for etcd. Work for the same card in this process waits until etcd
	// has been told.
	var once sync.Once
	release := func() {
		once.Do(func() {
			cancel()
			go func() {
				uctx, ucancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer ucancel()
				if err := k.Unlock(uctx); err != nil {
					rd.log.Warn("releasing a card lock; it expires with the session", "err", err)
				}
			}()
		})
	}
	return k, lctx, release, nil
}

// shortfall decides a debit whose shortfall the fund can cover. Under the
// card's lock the request is decided again (the card may have changed);
// if the fund is still needed an order is placed and the request stored as
// being decided, in one transaction; the fund company is asked with what is
// left of the deadline, and a confirmation is posted with the debit in one
// transaction that checks the lock's fencing token. A copy of the request
// that arrives meanwhile, on any switch, waits for this answer. Without a
// confirmation in time the answer is 91, kept for those copies, and the
// order is followed up by the timer: its money lands in the card, nothing
// is debited, and a later repeat is decided afresh.
func (p *Issuer) shortfall(ctx context.Context, bank *config.Bank, j job, lim config.Limits, need *needsRedemption) (Answer, error) {
	rd, r, f := p.redeemer, j.r, j.f
	card := need.card
	k, lctx, release, err := rd.lock(ctx, card.ID)
	if err != nil {
		return Answer{card: card}, err
	}
	defer release()

	orderID := newOrderID()
	if err := rd.followUp(lctx, orderID); err != nil {
		return Answer{card: card}, err
	}
	var within time.Duration
	if dl, ok := lctx.Deadline(); ok {
		within = time.Until(dl)
	}
	var (
		placed    *needsRedemption
		id, claim int64
		rep       Answer
	)
	err = p.books.Do(lctx, func(tx bookTx) error {
		var err error
		placed = nil
		first := j
		first.seen = need.seen
		first.onShortfall = func(lk *ledger.Lookup, need *needsRedemption, over *ledger.Prior) error {
			if err := tx.Fence(lctx, lk.Card.ID, k.Token()); err != nil {
				return err
			}
			err := tx.StartRedemption(lctx, lk.Card, ledger.NewRedemption{
				ID: orderID, Amount: need.amount, Purpose: ledger.PurposeShortfall,
				Day: f.Day, Quota: lim.RedemptionQuota, Fence: k.Token(),
			})
			if err != nil {
				return err
			}
			rec := p.record(bank, r, decision{card: lk.Card})
			rec.Over = over
			if id, claim, err = tx.BeginDeciding(lctx, rec, within); err != nil {
				return err
			}
			placed, card = need, lk.Card
			return nil
		}
		rep, err = p.decideIn(lctx, tx, first)
		return err
	})
	var aw *awaiting
	if errors.As(err, &aw) {
		release() // a copy is being decided elsewhere: it holds no claim on this lock
		_, rep, err = p.await(ctx, aw, r)
		return rep, err
	}
	if errors.Is(err, ledger.ErrCommitUnknown) {
		// Decided after all (its answer is stored), or an order placed,
		// or nothing: the ledger says which. A placed order is settled
		// by its follow-up, and the request is left being decided until
		// its time is up.
		return p.afterUnknownCommit(ctx, f, r)
	}
	if err != nil || placed == nil {
		if rep.card == nil {
			rep.card = card
		}
		return rep, err // decided without the fund after all, or failed
	}
	unanswered := func(why error) (Answer, error) {
		return p.releaseUndecided(j, orderID, id, claim, card, why)
	}

	st, err := rd.redeem(lctx, bank.Code, orderID, card, placed.amount, ledger.PurposeShortfall)
	switch {
	case err != nil || st.State == fund.Pending:
		rd.log.Warn("no confirmation before the deadline: answering 91, the order stays pending",
			"order", orderID, "pan", iso.MaskPAN(r.PAN), "amount", placed.amount, "err", err)
		return unanswered(fmt.Errorf("%w: fund company has not confirmed order %s", errDeadline, orderID))
	case st.State == fund.Failed:
		rd.settle(orderID, card.ID, st)
		return unanswered(fmt.Errorf("%w: fund company refused order %s: %s", ErrUnavailable, orderID, st.Reason))
	}

	// Confirmed: land the money and debit it, under the same lock.
	confirmed := func(tx bookTx, lk *ledger.Lookup) (decision, ledger.Record, []ledger.Effect, error) {
		if err := tx.Fence(lctx, lk.Card.ID, k.Token()); err != nil {
			return decision{}, ledger.Record{}, nil, err
		}
		if _, err := tx.ConfirmRedemption(lctx, lk.Card, orderID); err != nil {
			return decision{}, ledger.Record{}, nil, err
		}
		o, rec, effects, err := j.decide(tx, lk)
		var again *needsRedemption
		if errors.As(err, &again) {
			// Spent meanwhile by a debit that needed no lock: the
			// redeemed money stays in the card.
			o = decision{err: ledger.ErrInsufficientFunds, card: lk.Card}
			return o, p.record(bank, r, o), nil, nil
		}
		return o, rec, effects, err
	}
	rep2, err := p.decide(lctx, job{f: f, r: r, decide: confirmed, build: j.build, claim: claim})
	rep2.order = orderID
	switch {
	case errors.Is(err, ledger.ErrClaimLost):
		rd.log.Warn("confirmed redemption not posted: a repeat took the request over after its deadline; its follow-up lands the money",
			"order", orderID)
		return rep2, errTakenOver
	case err != nil && !errors.Is(err, errSilence):
		rd.log.Warn("confirmed redemption not posted in time: answering 91, its follow-up lands it",
			"order", orderID, "err", err)
		return unanswered(err)
	}
	return rep2, err
}

// errTakenOver is a decision that lost its request to a repeat.
var errTakenOver = fmt.Errorf("%w: a repeat took the request over", errSilence)

// releaseUndecided answers a request being decided that got no decision
// (91) and keeps that answer for the copies waiting on it, so that they
// are told the same; a later repeat decides it afresh. The answer goes out
// even when the ledger cannot be told: the request's time to answer then
// lapses on its own.
func (p *Issuer) releaseUndecided(j job, orderID string, id, claim int64, card *ledger.Card, why error) (Answer, error) {
	rep := Answer{code: responseCode(why), err: why, order: orderID, seq: id}
	resp, err := j.build(decision{err: why, card: card})
	if err != nil {
		return Answer{order: orderID, card: card}, why
	}
	rep.resp = resp
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if ok, err := p.books.Release(ctx, id, claim, rep.code, resp); err != nil || !ok {
		p.redeemer.log.Warn("request left as being decided; its time to answer lapses on its own", "order", orderID, "err", err)
	}
	return rep, nil
}

// redeem asks the fund company to redeem amount for the card, with what is
// left of ctx's deadline less the posting reserve.
func (rd *redeemer) redeem(ctx context.Context, bank, orderID string, c *ledger.Card, amount int64, purpose string) (fund.Status, error) {
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-postingReserve))
		defer cancel()
	}
	start := time.Now()
	st, err := rd.provider.Redeem(ctx, fund.Order{ID: orderID, Account: fund.Account(c.ID), Amount: amount, Currency: c.Currency})
	result := string(st.State)
	if err != nil {
		result = "no_answer"
	}
	rd.m.redemptions.WithLabelValues(bank, purpose, result).Inc()
	rd.m.redemptionLatency.WithLabelValues(purpose).Observe(time.Since(start).Seconds())
	return st, err
}

// settle records a final answer from the fund company outside any request.
func (rd *redeemer) settle(orderID string, cardID int64, st fund.Status) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := fund.Settle(ctx, rd.ledger, ledger.Order{ID: orderID, CardID: cardID}, st); err != nil {
		rd.log.Error("recording the fund company's answer; its follow-up will", "order", orderID, "err", err)
	}
}
