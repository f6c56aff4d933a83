package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strconv"
	"time"

	"github.com/moov-io/iso8583"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
)

// books is the ledger as the processor uses it; *ledger.Ledger in
// production (see ledgerBooks).
type books interface {
	Do(ctx context.Context, fn func(tx bookTx) error) error
	// AwaitDecision waits for a request being decided elsewhere.
	AwaitDecision(ctx context.Context, id int64) (*ledger.Prior, error)
	// Release answers a request being decided under claim without a
	// decision.
	Release(ctx context.Context, id, claim int64, code string, response []byte) (bool, error)
}

// bookTx is one ledger transaction.
type bookTx interface {
	LookupRequest(ctx context.Context, f ledger.Find) (*ledger.Lookup, error)
	FindOriginal(ctx context.Context, ref ledger.OriginalRef) (*ledger.Original, error)
	Save(ctx context.Context, r ledger.Record, effects []ledger.Effect) (int64, error)
	BeginDeciding(ctx context.Context, r ledger.Record, within time.Duration) (id, claim int64, err error)
	Fence(ctx context.Context, cardID, token int64) error
	StartRedemption(ctx context.Context, c *ledger.Card, n ledger.NewRedemption) error
	ConfirmRedemption(ctx context.Context, c *ledger.Card, id string) (bool, error)
}

// ledgerBooks is the ledger, timed.
type ledgerBooks struct {
	l       *ledger.Ledger
	metrics *metrics
}

func (b ledgerBooks) Do(ctx context.Context, fn func(tx bookTx) error) error {
	start := time.Now()
	err := b.l.Do(ctx, func(tx *ledger.Tx) error { return fn(tx) })
	result := "committed"
	if err != nil {
		result = "rolled_back"
	}
	b.metrics.ledgerDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return err
}

func (b ledgerBooks) AwaitDecision(ctx context.Context, id int64) (*ledger.Prior, error) {
	return b.l.AwaitDecision(ctx, id)
}

func (b ledgerBooks) Release(ctx context.Context, id, claim int64, code string, response []byte) (bool, error) {
	return b.l.Release(ctx, id, claim, code, response)
}

// processor decides issuer requests against the ledger.
type processor struct {
	books books
	now   func() time.Time
	log   *slog.Logger
	// redeemer covers shortfalls from the fund; without one a debit the
	// cash cannot cover is declined.
	redeemer *redeemer
	// exceptions counts messages kept for an operator (bank, kind); nil
	// counts nothing.
	exceptions *prometheus.CounterVec
}

// exchange is one request and its answer, as the link logs and counts it.
type exchange struct {
	req      *iso.Request // nil when the request could not be read
	mti      string
	code     string // DE39 sent, or codeUnanswered
	replayed bool   // the stored response to an earlier copy was sent
	joined   bool   // it waited for an earlier copy being decided
	lost     bool   // the link went down before the response was written
	order    string // the redemption order placed for it, if any
	err      error  // why it was declined or failed
	seq      int64  // the ledger's id of the request answered (0: none)
}

// codeUnanswered stands for the response code of a message that gets no
// response (in logs and metrics).
const codeUnanswered = "none"

// outcome is what a decision leaves for the response.
type outcome struct {
	err      error
	card     *ledger.Card
	authCode string
	raised   string // the kind of exception raised, if any
}

// handle answers one unpacked message. It returns the packed response
// body, or nil when the message gets no response.
func (p *processor) handle(ctx context.Context, bank *config.Bank, d *iso.Dialect, lim config.Limits, msg *iso8583.Message) ([]byte, exchange) {
	mti, _ := msg.GetMTI()
	ex := exchange{mti: mti}
	req, err := iso.ParseRequest(msg)
	if err != nil {
		ex.err = err
		if _, ok := iso.ResponseMTI(mti); !ok {
			ex.code = codeUnanswered // a response or an unknown MTI: nothing to answer
			return nil, ex
		}
		ex.code = rcFormatError
		if req != nil && req.Class != iso.ClassUnknown {
			ex.req = req
		}
		return p.plainResponse(d, msg, err), ex
	}
	ex.req = req
	build := func(o outcome) ([]byte, error) { return buildResponse(d, msg, o, lim) }

	var rep reply
	switch req.Class {
	case iso.ClassNetwork:
		switch req.NetworkCode {
		case "001", "002", "301":
		default:
			ex.err = errInvalidTransaction
		}
		ex.code = responseCode(ex.err)
		return p.plainResponse(d, msg, ex.err), ex
	case iso.ClassAuthorization, iso.ClassFinancial:
		rep, err = p.original(ctx, bank, req, lim, build)
	case iso.ClassAuthorizationAdvice, iso.ClassFinancialAdvice:
		rep, err = p.advice(ctx, bank, req, build)
	case iso.ClassReversal, iso.ClassReversalAdvice:
		rep, err = p.reversal(ctx, bank, req, build)
	}
	ex.joined = rep.joined
	if errors.Is(err, errSilence) {
		ex.err, ex.code = err, codeUnanswered
		return nil, ex
	}
	if err != nil {
		// Nothing was committed: the answer says why, and is not stored.
		ex.err, ex.order = err, rep.order
		ex.code = responseCode(err)
		if ex.code == rcMalfunction {
			p.log.Error("request failed", "mti", mti, "stan", req.STAN, "err", err)
		}
		if rep.card != nil {
			if b, berr := buildResponse(d, msg, outcome{err: err, card: rep.card}, lim); berr == nil {
				return b, ex
			}
		}
		return p.plainResponse(d, msg, err), ex
	}
	ex.code, ex.replayed, ex.order, ex.err, ex.seq = rep.code, rep.replayed, rep.order, rep.declined, rep.seq
	if rep.raised != "" && p.exceptions != nil {
		p.exceptions.WithLabelValues(bank.Code, rep.raised).Inc()
	}
	return rep.resp, ex
}

// plainResponse answers without a ledger decision: the echoed fields and
// the response code for err. When the echoed fields cannot be packed (a
// frame that was only partly readable) it answers with the MTI, DE11 and
// DE39 alone; it returns nil only when even that fails.
func (p *processor) plainResponse(d *iso.Dialect, msg *iso8583.Message, err error) []byte {
	b, perr := buildResponse(d, msg, outcome{err: err}, config.Limits{})
	if perr == nil {
		return b
	}
	mti, _ := msg.GetMTI()
	rmti, ok := iso.ResponseMTI(mti)
	if !ok {
		return nil
	}
	m := d.NewMessage()
	m.MTI(rmti)
	if stan, _ := msg.GetString(11); len(stan) == 6 {
		_ = m.Field(11, stan)
	}
	_ = m.Field(39, responseCode(err))
	b, perr = m.Pack()
	if perr != nil {
		p.log.Warn("response could not be packed", "mti", mti, "err", perr)
		return nil
	}
	return b
}

// buildResponse packs the response to msg for an outcome.
func buildResponse(d *iso.Dialect, msg *iso8583.Message, o outcome, lim config.Limits) ([]byte, error) {
	resp, err := iso.Respond(d, msg)
	if err != nil {
		return nil, err
	}
	code := responseCode(o.err)
	if err := resp.Field(39, code); err != nil {
		return nil, err
	}
	if code == rcApproved && o.authCode != "" {
		if err := resp.Field(38, o.authCode); err != nil {
			return nil, err
		}
	}
	if c := o.card; c != nil {
		if err := resp.Field(54, iso.FormatBalances(balances(c, lim))); err != nil {
			return nil, err
		}
	}
	b, err := resp.Pack()
	if err != nil {
		return nil, fmt.Errorf("packing response: %w", err)
	}
	return b, nil
}

// balances are DE54's amounts for a card: ledger and available balance,
// fund balance and what can be redeemed from it right now.
func balances(c *ledger.Card, lim config.Limits) []iso.Balance {
	redeemable := c.RedeemableToday(lim.RedemptionQuota)
	return []iso.Balance{
		{AccountType: iso.AccountCard, AmountType: iso.AmountLedger, Currency: c.Currency, Amount: c.Balance()},
		{AccountType: iso.AccountCard, AmountType: iso.AmountAvailable, Currency: c.Currency, Amount: c.Available()},
		{AccountType: iso.AccountFund, AmountType: iso.AmountLedger, Currency: c.Currency, Amount: c.Fund},
		{AccountType: iso.AccountFund, AmountType: iso.AmountAvailable, Currency: c.Currency, Amount: redeemable},
	}
}

// keyOf is the idempotency key of a request: the fields its bank names
// as identifying a transaction and, for a reversal, what it says stands.
func keyOf(bank *config.Bank, r *iso.Request) ledger.Key {
	k := ledger.Key{
		Bank: bank.Code, Class: r.MTIClass(), Fields: bank.TxnKey,
		Acquirer: r.Acquirer, STAN: r.STAN, Transmitted: r.Transmitted, Terminal: r.Terminal, RRN: r.RRN,
		LocalDate: r.LocalDate, LocalTime: r.LocalTime, Merchant: r.Merchant,
	}
	if r.Class.IsReversal() && r.Actual != nil {
		k.Actual = strconv.FormatInt(*r.Actual, 10)
	}
	return k
}

// origKey is the original DE90 names, if any.
func origKey(r *iso.Request) *ledger.OrigKey {
	o := r.Original
	if o == nil {
		return nil
	}
	return &ledger.OrigKey{Class: o.MTI[:3], Acquirer: o.Acquirer, STAN: o.STAN, Transmitted: o.Transmitted}
}

// originalRef finds the original a reversal or completion names: by DE90
// (with another DE7 too, of the same RRN or amount, when the bank's key
// leaves DE7 out: an acquirer that stamps DE7 afresh may name any
// transmission's), else by DE32, DE37, DE41 and DE11.
func originalRef(bank *config.Bank, r *iso.Request, classes ...string) ledger.OriginalRef {
	ref := ledger.OriginalRef{Bank: bank.Code, Terminal: r.Terminal, Acquirer: r.Acquirer, RRN: r.RRN, STAN: r.STAN, Classes: classes,
		Amount: r.Amount, LocalDate: r.LocalDate, LocalTime: r.LocalTime}
	if o := origKey(r); o != nil {
		ref.ByDE90, ref.AnyTransmission = o, !keyOf(bank, r).Names(ledger.FieldTransmitted)
	}
	return ref
}

// serialOf names the transaction a request belongs to (ledger.SerialKey):
// DE90's original where there is one, else the request's own fields.
func serialOf(bank *config.Bank, r *iso.Request) string {
	if o := r.Original; o != nil {
		return ledger.SerialKey(bank.Code, o.Acquirer, o.STAN, r.Terminal)
	}
	return ledger.SerialKey(bank.Code, r.Acquirer, r.STAN, r.Terminal)
}

var txnNames = map[string]string{
	iso.TxnPurchase: ledger.KindPurchase,
	iso.TxnCash:     ledger.KindCash,
	iso.TxnRefund:   ledger.KindRefund,
	iso.TxnDeposit:  ledger.KindDeposit,
	iso.TxnBalance:  "balance",
}

func txnName(code string) string {
	if n, ok := txnNames[code]; ok {
		return n
	}
	return "other"
}

func isDebit(code string) bool  { return code == iso.TxnPurchase || code == iso.TxnCash }
func isCredit(code string) bool { return code == iso.TxnRefund || code == iso.TxnDeposit }

// newAuthCode returns a random six-digit approval code (DE38).
func newAuthCode() string {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return "000000"
	}
	return fmt.Sprintf("%06d", n.Int64())
}

// record is the ledger record of a decided request.
func record(bank *config.Bank, r *iso.Request, o outcome) ledger.Record {
	rec := ledger.Record{
		Key:          keyOf(bank, r),
		MTI:          r.MTI,
		Currency:     r.Currency,
		Fingerprint:  r.Fingerprint(),
		TxnType:      txnName(r.TxnType),
		Amount:       r.Amount,
		ResponseCode: responseCode(o.err),
		AuthCode:     o.authCode,
	}
	if o.card != nil {
		rec.CardID = o.card.ID
	}
	return rec
}

// reply is a decided request's response.
type reply struct {
	resp     []byte
	code     string
	replayed bool   // stored for an earlier copy of the request
	joined   bool   // it waited for an earlier copy being decided
	order    string // redemption order placed on the way, if any
	declined error  // why it was declined, for logs and metrics
	seq      int64  // the ledger's id of the request answered
	// card, on an error, is the request's card, for DE54.
	card *ledger.Card
	// raised is the kind of exception the decision raised, if any.
	raised string
}

// plan decides a request on what its lookup found: the outcome for the
// response, the record to store and the ledger effects to write. A plan
// may instead return a *needsRedemption: nothing is saved, and the
// transaction is left to the caller's onShortfall; or an *awaiting: the
// request's original is being decided, and the request is decided again
// once it is.
type plan func(tx bookTx, lk *ledger.Lookup) (outcome, ledger.Record, []ledger.Effect, error)

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
	f     ledger.Find
	r     *iso.Request
	plan  plan
	build func(outcome) ([]byte, error)
	claim int64
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
func (p *processor) step(ctx context.Context, tx bookTx, j job) (reply, error) {
	lk, err := tx.LookupRequest(ctx, j.f)
	if err != nil {
		return reply{}, err
	}
	var over *ledger.Prior
	if pr := lk.Prior; pr != nil {
		switch {
		case string(pr.Fingerprint) != string(j.r.Fingerprint()):
			return reply{card: lk.Card}, errKeyReused
		case pr.State == ledger.StateAnswered:
			return reply{resp: pr.Response, code: pr.ResponseCode, replayed: true, seq: pr.ID}, nil
		case pr.State == ledger.StateDeciding && j.claim != 0 && pr.Claim == j.claim:
			over = pr // its own: now decided
		case pr.State == ledger.StateDeciding && !pr.Expired:
			return reply{}, &awaiting{id: pr.ID, card: lk.Card}
		case j.seen != nil && !samePrior(j.seen, pr) && pr.State == ledger.StateReleased:
			// Released since this request first looked: it arrived while
			// its original was being decided, and takes its answer.
			return reply{resp: pr.Response, code: pr.ResponseCode, replayed: true, joined: true, seq: pr.ID}, nil
		default:
			over = pr // released before it came, or its decider is gone
		}
	}
	o, rec, effects, err := j.plan(tx, lk)
	var need *needsRedemption
	if errors.As(err, &need) {
		need.seen = noPrior
		if lk.Prior != nil {
			need.seen = lk.Prior
		}
		if j.onShortfall != nil {
			return reply{}, j.onShortfall(lk, need, over)
		}
	}
	if err != nil {
		return reply{card: lk.Card}, err
	}
	resp, err := j.build(o)
	if err != nil {
		return reply{}, err
	}
	rec.Response, rec.Over = resp, over
	id, err := tx.Save(ctx, rec, effects)
	return reply{resp: resp, code: rec.ResponseCode, declined: o.err, seq: id, raised: o.raised}, err
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
func (p *processor) decide(ctx context.Context, j job) (rep reply, err error) {
	for {
		err = p.books.Do(ctx, func(tx bookTx) error {
			rep, err = p.step(ctx, tx, j)
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
func (p *processor) await(ctx context.Context, aw *awaiting, r *iso.Request) (again bool, rep reply, err error) {
	pr, err := p.books.AwaitDecision(ctx, aw.id)
	switch {
	case err != nil && ctx.Err() != nil && !aw.original:
		return false, reply{joined: true}, fmt.Errorf("%w: %w", errUndecided, err)
	case err != nil:
		return false, reply{card: aw.card}, err
	case aw.original:
		return true, reply{}, nil
	case pr.State == ledger.StateDeciding:
		return false, reply{joined: true}, errUndecided
	case string(pr.Fingerprint) != string(r.Fingerprint()):
		return false, reply{}, errKeyReused
	}
	return false, reply{resp: pr.Response, code: pr.ResponseCode, replayed: true, joined: true, seq: pr.ID}, nil
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
func (p *processor) afterUnknownCommit(ctx context.Context, f ledger.Find, r *iso.Request) (reply, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	f.PAN, f.CheckReversed = "", false
	var rep reply
	err := p.books.Do(cctx, func(tx bookTx) error {
		lk, err := tx.LookupRequest(cctx, f)
		if err != nil || lk.Prior == nil || lk.Prior.State != ledger.StateAnswered {
			return err
		}
		if string(lk.Prior.Fingerprint) != string(r.Fingerprint()) {
			return errKeyReused
		}
		rep = reply{resp: lk.Prior.Response, code: lk.Prior.ResponseCode, seq: lk.Prior.ID}
		return nil
	})
	switch {
	case err != nil:
		p.log.Error("commit outcome unknown and the ledger cannot say: not answering", "stan", r.STAN, "err", err)
		return reply{}, errOutcomeUnknown
	case rep.resp == nil:
		return reply{}, fmt.Errorf("%w: the ledger did not commit", errUnavailable)
	}
	return rep, nil
}
