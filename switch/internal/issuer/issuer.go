package issuer

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/fund"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/locks"
)

// Issuer decides the requests banks send against the ledger, covering
// shortfalls from cards' funds.
type Issuer struct {
	books books
	now   func() time.Time
	log   *slog.Logger
	m     *metrics
	// redeemer covers shortfalls from the fund; without one a debit the
	// cash cannot cover is declined.
	redeemer *redeemer
	// group commits new originals together; nil: each on its own.
	group *committer
	// turns keeps each card's requests in their order of arrival.
	turns turns
	// keyFP keys requests' content fingerprints as the ledger stores
	// them (Ledger.Fingerprint); nil leaves them as they are.
	keyFP func([]byte) []byte
}

// CardLocker takes a card's etcd lock (*locks.Locker).
type CardLocker interface {
	Lock(ctx context.Context, key string) (*locks.Lock, error)
}

// FollowUps schedule the check of a redemption order at a time: the timer,
// which settles an order its request could not.
type FollowUps interface {
	FollowUp(ctx context.Context, orderID string, at time.Time) error
}

// Options are what an Issuer is made of.
type Options struct {
	Ledger *ledger.Ledger
	Log    *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Fund is the fund company, Locker takes cards' locks and FollowUps
	// settle orders their requests could not. With all three, a debit
	// the cash cannot cover is covered from the card's fund; without,
	// it is declined.
	Fund      fund.Provider
	Locker    CardLocker
	FollowUps FollowUps
	// Registerer takes the issuer's metrics; none are exported when nil.
	Registerer prometheus.Registerer
	// GroupCommit, when set, decides new authorisations and financial
	// requests many at a time, in one ledger transaction per group.
	GroupCommit *GroupCommit
}

// GroupCommit says how requests are grouped into commits: a group closes
// when it holds Size requests or, while other groups are in flight, once
// Window has passed since it opened; at most Batches are in flight. Zero
// values take the defaults.
type GroupCommit struct {
	Window  time.Duration
	Size    int
	Batches int
}

// New builds an issuer.
func New(o Options) *Issuer {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	m := newMetrics(o.Registerer)
	i := &Issuer{books: ledgerBooks{l: o.Ledger, m: m}, now: now, log: o.Log, m: m}
	if o.Ledger != nil {
		i.keyFP = o.Ledger.Fingerprint
	}
	if o.Fund != nil && o.Locker != nil && o.FollowUps != nil {
		i.redeemer = &redeemer{ledger: o.Ledger, provider: o.Fund, locker: o.Locker, followUps: o.FollowUps, m: m, log: o.Log}
	}
	if o.GroupCommit != nil {
		i.group = newCommitter(o.Ledger, m, o.Log, *o.GroupCommit)
		i.group.unknown = i.afterUnknownCommit
	}
	return i
}

// Redeems says whether the issuer covers shortfalls and transfers out
// from cards' funds (it has a fund company and card locks).
func (p *Issuer) Redeems() bool { return p.redeemer != nil }

// Banks makes the series of the snapshot's enabled banks' requests exist
// from the start, at zero.
func (p *Issuer) Banks(snap *config.Snapshot) {
	for _, code := range snap.BankCodes() {
		if !snap.Banks[code].Enabled {
			continue
		}
		for _, stage := range []string{stageFund, stageLedger} {
			p.m.deadlineMisses.WithLabelValues(code, stage)
		}
		p.m.exceptions.WithLabelValues(code, ledger.ExceptionForeignCurrency)
	}
}

// books is the ledger as the issuer uses it; *ledger.Ledger in production
// (see ledgerBooks).
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
	l *ledger.Ledger
	m *metrics
}

func (b ledgerBooks) Do(ctx context.Context, fn func(tx bookTx) error) error {
	start := time.Now()
	err := b.l.Do(ctx, func(tx *ledger.Tx) error { return fn(tx) })
	result := "committed"
	if err != nil {
		result = "rolled_back"
	}
	b.m.ledgerDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return err
}

func (b ledgerBooks) AwaitDecision(ctx context.Context, id int64) (*ledger.Prior, error) {
	return b.l.AwaitDecision(ctx, id)
}

func (b ledgerBooks) Release(ctx context.Context, id, claim int64, code string, response []byte) (bool, error) {
	return b.l.Release(ctx, id, claim, code, response)
}
