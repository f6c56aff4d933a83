package fund

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"
)

// SimOptions shape the simulated fund company.
type SimOptions struct {
	// Latency is how long an order takes to be decided.
	Latency time.Duration
	// FailRate is the share of orders refused (0 to 1).
	FailRate float64
	// LoseRate is the share of requests lost on the way: the fund never
	// sees them and the caller gets no answer.
	LoseRate float64
}

// Simulator is a fund company in memory. Orders are decided when they
// arrive and become final after Latency, whether or not the caller is
// still waiting.
type Simulator struct {
	opts SimOptions

	mu     sync.Mutex // guards orders and rng
	orders map[string]*simOrder
	rng    *rand.Rand
}

type simOrder struct {
	kind  string // redemption or subscription
	order Order
	final State
	due   time.Time
}

// ErrNoAnswer is a request the simulator lost.
var ErrNoAnswer = errors.New("fund: no answer from the fund company")

// NewSimulator returns a simulated fund company.
func NewSimulator(o SimOptions) *Simulator {
	return &Simulator{opts: o, orders: make(map[string]*simOrder), rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

func (s *Simulator) Redeem(ctx context.Context, o Order) (Status, error) {
	return s.place(ctx, "redemption", o)
}

func (s *Simulator) Subscribe(ctx context.Context, o Order) (Status, error) {
	return s.place(ctx, "subscription", o)
}

func (s *Simulator) RedemptionStatus(_ context.Context, id string) (Status, error) {
	return s.status("redemption", id)
}

func (s *Simulator) SubscriptionStatus(_ context.Context, id string) (Status, error) {
	return s.status("subscription", id)
}

func (s *Simulator) place(ctx context.Context, kind string, o Order) (Status, error) {
	s.mu.Lock()
	lost := s.rng.Float64() < s.opts.LoseRate
	so, exists := s.orders[o.ID]
	switch {
	case exists && (so.kind != kind || so.order != o):
		s.mu.Unlock()
		return Status{OrderID: o.ID, State: Failed, Reason: "order id reused for another order"}, nil
	case !exists && !lost:
		final := Confirmed
		if s.rng.Float64() < s.opts.FailRate {
			final = Failed
		}
		so = &simOrder{kind: kind, order: o, final: final, due: time.Now().Add(s.opts.Latency)}
		s.orders[o.ID] = so
	}
	s.mu.Unlock()

	wait := s.opts.Latency
	if so != nil {
		wait = time.Until(so.due)
	}
	t := time.NewTimer(max(wait, 0))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
	if so == nil {
		return Status{}, ErrNoAnswer
	}
	return s.status(kind, o.ID)
}

func (s *Simulator) status(kind, id string) (Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	so, ok := s.orders[id]
	if !ok || so.kind != kind {
		return Status{}, ErrUnknownOrder
	}
	st := Status{OrderID: id, State: Pending}
	if !time.Now().Before(so.due) {
		st.State = so.final
		if so.final == Failed {
			st.Reason = "refused by the simulated fund"
		}
	}
	return st, nil
}
