package issuer

import (
	"context"
	"errors"
	"fmt"

	"github.com/moov-io/iso8583"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
)

// decision is what deciding a request leaves for its response.
type decision struct {
	err      error
	card     *ledger.Card
	authCode string
	raised   string // the kind of exception raised, if any
}

// Handle answers one unpacked message of bank's, under ctx's deadline
// and the limits of the config it arrived under. It returns the packed
// response body, or nil when the message gets no response, and the
// request's account.
func (p *Issuer) Handle(ctx context.Context, bank *config.Bank, d *iso.Dialect, lim config.Limits, msg *iso8583.Message, body []byte) ([]byte, Answer) {
	a := p.handle(ctx, bank, d, lim, msg, body)
	a.p = p
	if a.raised != "" {
		p.m.exceptions.WithLabelValues(bank.Code, a.raised).Inc()
	}
	return a.resp, a
}

func (p *Issuer) handle(ctx context.Context, bank *config.Bank, d *iso.Dialect, lim config.Limits, msg *iso8583.Message, body []byte) Answer {
	mti, _ := msg.GetMTI()
	req, err := iso.ParseRequest(msg)
	if err != nil {
		a := Answer{mti: mti, err: err}
		if _, ok := iso.ResponseMTI(mti); !ok {
			a.code = codeUnanswered // a response or an unknown MTI: nothing to answer
			return a
		}
		a.code = rcFormatError
		if req != nil && req.Class != iso.ClassUnknown {
			a.req = req
		}
		a.resp = p.plainResponse(d, msg, err)
		return a
	}
	// It arrived its bank's budget before its deadline (the link sets
	// one), whatever it waited for since.
	req.Received = p.now()
	if dl, ok := ctx.Deadline(); ok {
		req.Received = dl.Add(-bank.Budget())
	}
	// Worked out once: its record and every comparison with what is
	// stored use it.
	req.Keyed = p.fingerprint(req)
	build := func(o decision) ([]byte, error) { return buildResponse(d, msg, body, o, lim) }
	if req.Class == iso.ClassNetwork || req.PAN == "" {
		return p.decideRequest(ctx, bank, d, lim, msg, req, mti, build, false)
	}
	tu, err := p.turns.take(ctx, req.PAN, string(keyOf(bank, req).Digest()))
	switch {
	case err != nil && tu.ahead:
		// A copy whose time ran out while its original was still being
		// decided gets no answer, as one waiting for it in the ledger
		// would not: the acquirer's repeat is answered what was decided.
		return Answer{req: req, mti: mti, err: fmt.Errorf("%w: %w", errUndecided, err), code: codeUnanswered}
	case err != nil:
		err = fmt.Errorf("%w: waiting for the card's earlier requests: %w", ErrUnavailable, err)
		return Answer{req: req, mti: mti, err: err, code: responseCode(err), resp: p.plainResponse(d, msg, err)}
	}
	var a Answer
	fingerprint := req.Keyed
	if j := tu.joined; j != nil && string(j.fingerprint) == string(fingerprint) {
		// A copy of a request still in the pipeline when it came: it
		// gets the answer the ledger stored for that one.
		a = Answer{req: req, mti: mti, resp: j.resp, code: j.code, seq: j.seq, replayed: true, joined: true}
	} else {
		a = p.decideRequest(ctx, bank, d, lim, msg, req, mti, build, tu.ahead)
	}
	tu.end(a, fingerprint)
	return a
}

// decideRequest decides a request that has its card's turn (joins: one
// whose copy was in the pipeline when it came, and answered nothing the
// ledger kept).
func (p *Issuer) decideRequest(ctx context.Context, bank *config.Bank, d *iso.Dialect, lim config.Limits, msg *iso8583.Message,
	req *iso.Request, mti string, build func(decision) ([]byte, error), joins bool) Answer {
	var (
		a   Answer
		err error
	)
	switch req.Class {
	case iso.ClassNetwork:
		switch req.NetworkCode {
		case "001", "002", "301":
		default:
			err = errInvalidTransaction
		}
		return Answer{req: req, mti: mti, err: err, code: responseCode(err), resp: p.plainResponse(d, msg, err)}
	case iso.ClassAuthorization, iso.ClassFinancial:
		a, err = p.original(ctx, bank, req, lim, build, joins)
	case iso.ClassAuthorizationAdvice, iso.ClassFinancialAdvice:
		a, err = p.advice(ctx, bank, req, build)
	case iso.ClassReversal, iso.ClassReversalAdvice:
		a, err = p.reversal(ctx, bank, req, build)
	}
	a.req, a.mti = req, mti
	switch {
	case errors.Is(err, errSilence):
		// Nothing stored for it: no exception was kept either.
		a.err, a.code, a.resp, a.seq, a.replayed, a.raised = err, codeUnanswered, nil, 0, false, ""
	case err != nil:
		// Nothing was committed: the answer says why, and is not stored.
		a.err, a.code, a.seq, a.replayed, a.raised = err, responseCode(err), 0, false, ""
		if a.code == rcMalfunction {
			p.log.Error("request failed", "mti", mti, "stan", req.STAN, "err", iso.MaskPANs(err.Error()))
		}
		a.resp = nil
		if a.card != nil {
			if b, berr := build(decision{err: err, card: a.card}); berr == nil {
				a.resp = b
			}
		}
		if a.resp == nil {
			a.resp = p.plainResponse(d, msg, err)
		}
	}
	return a
}

// Refuse answers, without deciding it, a message the link will not pass
// on: err says why (a frame that cannot be read, a MAC that does not
// verify, a link not signed on, no bank to route it to, a request over
// the link's rate). Nothing is posted. The request is read for the log
// only once routed to a bank. It returns nil when the message gets no
// response.
func (p *Issuer) Refuse(bank *config.Bank, d *iso.Dialect, msg *iso8583.Message, err error) ([]byte, Answer) {
	mti, _ := msg.GetMTI()
	a := Answer{mti: mti, code: responseCode(err), err: err, p: p}
	switch {
	case bank != nil:
		if req, perr := iso.ParseRequest(msg); perr == nil {
			a.req = req
		}
	case errors.Is(err, iso.ErrFormat):
		a.err = nil // the link logs what could not be read
	default:
		a.de3, _ = msg.GetString(3)
	}
	a.resp = p.plainResponse(d, msg, err)
	return a.resp, a
}

// Failed accounts for a request whose handling failed past recovering
// (err): answered 96 in the counts, of which nothing else is known.
func (p *Issuer) Failed(err error) Answer {
	return Answer{code: rcMalfunction, err: err, p: p}
}

// plainResponse answers without a ledger decision: the echoed fields and
// the response code for err. When the echoed fields cannot be packed (a
// frame that was only partly readable) it answers with the MTI, DE11 and
// DE39 alone; it returns nil only when even that fails.
func (p *Issuer) plainResponse(d *iso.Dialect, msg *iso8583.Message, err error) []byte {
	b, perr := buildResponse(d, msg, nil, decision{err: err}, config.Limits{})
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

// buildResponse packs the response to msg, unpacked from body, for a
// decision. With body it is spliced from the request's own bytes
// (iso.Dialect.Reply); without, or if that fails, it is built as a
// message.
func buildResponse(d *iso.Dialect, msg *iso8583.Message, body []byte, o decision, lim config.Limits) ([]byte, error) {
	var vals [3]iso.Value
	set := vals[:0]
	code := responseCode(o.err)
	if code == rcApproved && o.authCode != "" {
		set = append(set, iso.Value{ID: 38, Value: o.authCode})
	}
	set = append(set, iso.Value{ID: 39, Value: code})
	if c := o.card; c != nil {
		set = append(set, iso.Value{ID: 54, Value: iso.FormatBalances(balances(c, lim))})
	}
	if body != nil {
		if b, err := d.Reply(body, msg, set); err == nil {
			return b, nil
		}
	}
	resp, err := iso.Respond(d, msg)
	if err != nil {
		return nil, err
	}
	for _, v := range set {
		if err := resp.Field(v.ID, v.Value); err != nil {
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
