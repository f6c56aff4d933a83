package issuer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
)

// decider decides a request on what its lookup found: the decision for
// the response, the record to store and the ledger effects to write. A decider
// may instead return a *needsRedemption: nothing is saved, and the
// transaction is left to the caller's onShortfall; or an *awaiting: the
// request's original is being decided, and the request is decided again
// once it is.
type decider func(tx bookTx, lk *ledger.Lookup) (decision, ledger.Record, []ledger.Effect, error)

// awaiting is a request that must wait for another being decided: a copy
// of it (which then answers for both), or its original.
type awaiting struct {
	id       int64
	original bool
	card     *ledger.Card // the request's, for DE54 if the wait fails
}

func (a *awaiting) Error() string {
	if a.original {
		return fmt.Sprintf("waiting for its original (request %d) to be decided", a.id)
	}
	return fmt.Sprintf("waiting for an earlier copy (request %d) to be decided", a.id)
}

// job is one request's work in the ledger: what to look up, how to decide
// it and answer it, and, once it is being decided (the shortfall path),
// the claim it is decided under.
type job struct {
	f      ledger.Find
	r      *iso.Request
	decide decider
	build  func(decision) ([]byte, error)
	claim  int64
	// onShortfall, when set, runs in place of saving when the plan needs
	// a redemption; over is what the request takes the place of.
	onShortfall func(lk *ledger.Lookup, need *needsRedemption, over *ledger.Prior) error
	// seen, when the request is looked up again (under the card's lock),
	// is what it found under its key the first time (noPrior: nothing).
	seen *ledger.Prior
}

// step is one request's work inside a ledger transaction: look it up,
// replay an earlier answer or wait for one being decided, or let the plan
// decide and save the decision with its response. A request stored as
// released, or whose decider ran out of time, is decided afresh in its
// place. When the plan needs a redemption, onShortfall (if set) runs
// instead and the transaction commits whatever it wrote.
func (p *Issuer) decideIn(ctx context.Context, tx bookTx, j job) (Answer, error) {
	lk, err := tx.LookupRequest(ctx, j.f)
	if err != nil {
		return Answer{}, err
	}
	var over *ledger.Prior
	if pr := lk.Prior; pr != nil {
		switch {
		case string(pr.Fingerprint) != string(p.fingerprint(j.r)):
			return Answer{card: lk.Card}, errKeyReused
		case pr.State == ledger.StateAnswered:
			return Answer{resp: pr.Response, code: pr.ResponseCode, replayed: true, seq: pr.ID}, nil
		case pr.State == ledger.StateDeciding && j.claim != 0 && pr.Claim == j.claim:
			over = pr // its own: now decided
		case pr.State == ledger.StateDeciding && !pr.Expired:
			return Answer{}, &awaiting{id: pr.ID, card: lk.Card}
		case j.seen != nil && !samePrior(j.seen, pr) && pr.State == ledger.StateReleased:
			// Released since this request first looked: it arrived while
			// its original was being decided, and takes its answer.
			return Answer{resp: pr.Response, code: pr.ResponseCode, replayed: true, joined: true, seq: pr.ID}, nil
		default:
			over = pr // released before it came, or its decider is gone
		}
	}
	o, rec, effects, err := j.decide(tx, lk)
	var need *needsRedemption
	if errors.As(err, &need) {
		need.seen = noPrior
		if lk.Prior != nil {
			need.seen = lk.Prior
		}
		if j.onShortfall != nil {
			return Answer{}, j.onShortfall(lk, need, over)
		}
	}
	if err != nil {
		return Answer{card: lk.Card}, err
	}
	resp, err := j.build(o)
	if err != nil {
		return Answer{}, err
	}
	rec.Response, rec.Over = resp, over
	id, err := tx.Save(ctx, rec, effects)
	return Answer{resp: resp, code: rec.ResponseCode, err: o.err, seq: id, raised: o.raised}, err
}

// noPrior is what a request saw when nothing was stored under its key.
var noPrior = &ledger.Prior{}

// samePrior reports whether a and b are one stored request in one state
// under one claim.
func samePrior(a, b *ledger.Prior) bool {
	return a.ID == b.ID && a.State == b.State && a.Claim == b.Claim
}

// decide runs one request's step in a ledger transaction of its own. A
// request that must wait for another waits, then is answered with the
// other's answer (a copy) or decided again (a reversal or completion
// whose original was being decided).
func (p *Issuer) decide(ctx context.Context, j job) (rep Answer, err error) {
	for {
		err = p.books.Do(ctx, func(tx bookTx) error {
			rep, err = p.decideIn(ctx, tx, j)
			return err
		})
		var aw *awaiting
		switch {
		case errors.As(err, &aw):
			if again, arep, aerr := p.await(ctx, aw, j.r); !again {
				return arep, aerr
			}
		case errors.Is(err, ledger.ErrCommitUnknown):
			return p.afterUnknownCommit(ctx, j.f, j.r)
		default:
			return rep, err
		}
	}
}

// await waits for the request aw names to be decided. A copy takes its
// answer, the 91 of one released included; if its time to answer passes
// undecided, the copy gets none either (the acquirer repeats, and the
// repeat decides it afresh). A request waiting for its original is
// decided again.
func (p *Issuer) await(ctx context.Context, aw *awaiting, r *iso.Request) (again bool, rep Answer, err error) {
	pr, err := p.books.AwaitDecision(ctx, aw.id)
	switch {
	case err != nil && ctx.Err() != nil && !aw.original:
		return false, Answer{joined: true}, fmt.Errorf("%w: %w", errUndecided, err)
	case err != nil:
		return false, Answer{card: aw.card}, err
	case aw.original:
		return true, Answer{}, nil
	case pr.State == ledger.StateDeciding:
		return false, Answer{joined: true}, errUndecided
	case string(pr.Fingerprint) != string(p.fingerprint(r)):
		return false, Answer{}, errKeyReused
	}
	return false, Answer{resp: pr.Response, code: pr.ResponseCode, replayed: true, joined: true, seq: pr.ID}, nil
}

// errSilence is a request that must get no answer: the bank's timeout,
// then its repeat or reversal, settles it.
var errSilence = errors.New("no answer")

// Requests left unanswered.
var (
	errOutcomeUnknown = fmt.Errorf("%w: the ledger's outcome is unknown", errSilence)
	errUndecided      = fmt.Errorf("%w: an earlier copy was not decided in time", errSilence)
)

// afterUnknownCommit answers a request whose commit never came back: with
// what was stored if it committed, 91 if it did not, and nothing at all
// if the ledger cannot say.
func (p *Issuer) afterUnknownCommit(ctx context.Context, f ledger.Find, r *iso.Request) (Answer, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	f.PAN, f.CheckReversed = "", false
	var rep Answer
	err := p.books.Do(cctx, func(tx bookTx) error {
		lk, err := tx.LookupRequest(cctx, f)
		if err != nil || lk.Prior == nil || lk.Prior.State != ledger.StateAnswered {
			return err
		}
		if string(lk.Prior.Fingerprint) != string(p.fingerprint(r)) {
			return errKeyReused
		}
		rep = Answer{resp: lk.Prior.Response, code: lk.Prior.ResponseCode, seq: lk.Prior.ID}
		return nil
	})
	switch {
	case err != nil:
		p.log.Error("commit outcome unknown and the ledger cannot say: not answering", "stan", r.STAN, "err", err)
		return Answer{}, errOutcomeUnknown
	case rep.resp == nil:
		return Answer{}, fmt.Errorf("%w: the ledger did not commit", ErrUnavailable)
	}
	return rep, nil
}
