package issuer

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
)

// Answer is the issuer's account of one request: its response and what the
// switch logs and counts of it once the response is written.
type Answer struct {
	resp     []byte
	req      *iso.Request // nil when the request could not be read
	mti      string
	code     string // DE39 sent, or codeUnanswered
	replayed bool   // the stored response to an earlier copy was sent
	joined   bool   // it waited for an earlier copy being decided
	order    string // the redemption order placed for it, if any
	err      error  // why it was declined or failed
	seq      int64  // the ledger's id of the request answered (0: none)
	lost     bool   // the link went down before the response was written
	de3      string // DE3 as it came, of a request refused unread
	// card, on an error, is the request's card, for DE54.
	card *ledger.Card
	// raised is the kind of exception the decision raised, if any.
	raised string
	p      *Issuer
}

// codeUnanswered stands for the response code of a message that gets no
// response (in logs and metrics).
const codeUnanswered = "none"

// Code is the response code sent (DE39), or "none".
func (a Answer) Code() string { return a.code }

// Seq is the ledger's id of the request answered; 0 when none.
func (a Answer) Seq() int64 { return a.seq }

// SignOn reports an approved sign-on (+1) or sign-off (-1); 0 otherwise.
func (a Answer) SignOn() int {
	if a.req == nil || a.req.Class != iso.ClassNetwork || a.code != rcApproved {
		return 0
	}
	switch a.req.NetworkCode {
	case "001":
		return 1
	case "002":
		return -1
	}
	return 0
}

// Answered counts the request and logs it, once its response has been
// written for bank's link (lost: the link went down first). A quiet one
// is counted but not logged, as a flood over a link's rate is.
func (a Answer) Answered(bank string, arrival time.Time, lost, quiet bool) {
	if a.p == nil {
		return
	}
	a.lost = lost
	if lost && quiet {
		a.code = codeUnanswered // counted as what the flood got: nothing
	}
	a.p.answered(bank, a, arrival, quiet)
}

// answered counts and logs one answered request.
func (p *Issuer) answered(bank string, a Answer, arrival time.Time, quiet bool) {
	elapsed := time.Since(arrival)
	mti := mtiLabel(a.mti)
	proc := "none"
	switch {
	case a.req != nil:
		proc = procLabel(a.req.TxnType)
	case quiet && len(a.de3) >= 2:
		proc = procLabel(a.de3[:2]) // a flood is counted by what it asked for
	}
	p.m.requests.WithLabelValues(bank, mti, proc, a.code).Inc()
	p.m.latency.WithLabelValues(bank, mti).Observe(elapsed.Seconds())
	switch {
	case errors.Is(a.err, errOverQuota):
		p.m.quotaRejections.WithLabelValues(bank).Inc()
	case a.code != rcUnavailable:
	case errors.Is(a.err, errDeadline):
		p.m.deadlineMisses.WithLabelValues(bank, stageFund).Inc()
	case errors.Is(a.err, context.DeadlineExceeded):
		p.m.deadlineMisses.WithLabelValues(bank, stageLedger).Inc()
	}
	if quiet {
		return
	}
	attrs := []slog.Attr{slog.String("bank", bank), slog.String("mti", a.mti)}
	if r := a.req; r != nil {
		attrs = append(attrs,
			slog.String("processing_code", r.Processing),
			slog.String("pan", iso.MaskPAN(r.PAN)),
			slog.String("stan", r.STAN),
			slog.String("rrn", r.RRN),
			slog.Int64("amount", r.Amount))
	}
	attrs = append(attrs, slog.String("response_code", a.code), slog.Duration("latency", elapsed))
	if a.replayed {
		attrs = append(attrs, slog.Bool("replayed", true))
	}
	if a.joined {
		attrs = append(attrs, slog.Bool("joined", true)) // waited for a copy being decided
	}
	if a.lost {
		attrs = append(attrs, slog.Bool("lost", true))
	}
	if a.order != "" {
		attrs = append(attrs, slog.String("order", a.order))
	}
	if a.err != nil && a.code != rcApproved {
		attrs = append(attrs, slog.String("reason", iso.MaskPANs(a.err.Error()))) // no error may carry a card number into the log
	}
	p.log.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}
