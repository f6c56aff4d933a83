package fund_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/goldcard/goldcard/fund"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
)

func TestDay(t *testing.T) {
	for in, want := range map[string]string{
		"2026-11-25T15:59:59Z": "2026-11-25", // 23:59:59 in Shanghai
		"2026-11-25T16:00:00Z": "2026-11-26", // midnight in Shanghai
		"2026-11-24T23:00:00Z": "2026-11-25",
	} {
		ts, _ := time.Parse(time.RFC3339, in)
		if got := fund.Day(ts).Format(time.DateOnly); got != want {
			t.Errorf("Day(%s) = %s, want %s", in, got, want)
		}
	}
}

// providers runs a test against the simulator directly and through the
// HTTP gateway and fundsim handler.
func providers(t *testing.T, o fund.SimOptions, fn func(t *testing.T, p fund.Provider)) {
	t.Run("simulator", func(t *testing.T) { fn(t, fund.NewSimulator(o)) })
	t.Run("gateway", func(t *testing.T) {
		srv := httptest.NewServer(fund.Handler(fund.NewSimulator(o), slog.New(slog.DiscardHandler)))
		t.Cleanup(srv.Close)
		g, err := fund.NewGateway(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		fn(t, g)
	})
}

var order = fund.Order{ID: "order-0001", Account: "GC1", Amount: 28000, Currency: "156"}

func TestConfirmedAndIdempotent(t *testing.T) {
	providers(t, fund.SimOptions{Latency: 20 * time.Millisecond}, func(t *testing.T, p fund.Provider) {
		ctx := context.Background()
		st, err := p.Redeem(ctx, order)
		if err != nil || st.State != fund.Confirmed {
			t.Fatalf("redeem: %+v %v", st, err)
		}
		again, err := p.Redeem(ctx, order)
		if err != nil || again.State != fund.Confirmed {
			t.Fatalf("the same order again: %+v %v", again, err)
		}
		other := order
		other.Amount++
		if st, err := p.Redeem(ctx, other); err != nil || st.State != fund.Failed {
			t.Fatalf("the same id for another amount: %+v %v", st, err)
		}
		if _, err := p.RedemptionStatus(ctx, "order-9999"); !errors.Is(err, fund.ErrUnknownOrder) {
			t.Fatalf("unknown order: %v", err)
		}
	})
}

// TestSlowAnswerIsPendingThenFinal: a caller that stops waiting before
// the fund has decided gets no answer; the order stays pending while the
// fund decides and is final once its latency has passed since it
// arrived, whether or not anyone still waits.
func TestSlowAnswerIsPendingThenFinal(t *testing.T) {
	// placeAndLeave sends the order and stops waiting once the fund has
	// it; it returns what the caller got.
	placeAndLeave := func(t *testing.T, p fund.Provider) error {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		answered := make(chan error, 1)
		go func() { _, err := p.Redeem(ctx, order); answered <- err }()
		eventually(t, "the fund to have the order", func() bool {
			_, err := p.RedemptionStatus(context.Background(), order.ID)
			return !errors.Is(err, fund.ErrUnknownOrder)
		})
		cancel()
		return <-answered
	}
	// The fund's clock starts when the order arrives, after placed: it
	// is final no earlier than placed+latency.
	const latency = time.Second
	providers(t, fund.SimOptions{Latency: latency}, func(t *testing.T, p fund.Provider) {
		placed := time.Now()
		if err := placeAndLeave(t, p); err == nil && time.Since(placed) < latency {
			t.Fatalf("answered %s after placing, before the fund's latency of %s", time.Since(placed), latency)
		}
		st, err := p.RedemptionStatus(context.Background(), order.ID)
		switch read := time.Since(placed); {
		case err != nil:
			t.Fatalf("status while deciding: %v", err)
		case read < latency && st.State != fund.Pending:
			t.Fatalf("status %s after placing, while the fund decides: %+v", read, st)
		case read >= latency:
			t.Logf("status read %s after placing, too late to see it pending: %+v", read, st)
		}
		eventually(t, "the order to be final", func() bool {
			st, err = p.RedemptionStatus(context.Background(), order.ID)
			return err != nil || st.State != fund.Pending
		})
		if waited := time.Since(placed); waited < latency {
			t.Fatalf("final %s after placing, before the fund's latency of %s", waited, latency)
		}
		if err != nil || st.State != fund.Confirmed {
			t.Fatalf("status after deciding: %+v %v", st, err)
		}
	})
}

// eventually polls cond until it holds, for at most 30s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLostAndRefused(t *testing.T) {
	providers(t, fund.SimOptions{Latency: 10 * time.Millisecond, LoseRate: 1}, func(t *testing.T, p fund.Provider) {
		if _, err := p.Redeem(context.Background(), order); err == nil {
			t.Fatal("a lost request was answered")
		}
		if _, err := p.RedemptionStatus(context.Background(), order.ID); !errors.Is(err, fund.ErrUnknownOrder) {
			t.Fatalf("a lost order is known: %v", err)
		}
	})
	providers(t, fund.SimOptions{Latency: 10 * time.Millisecond, FailRate: 1}, func(t *testing.T, p fund.Provider) {
		st, err := p.Redeem(context.Background(), order)
		if err != nil || st.State != fund.Failed || st.Reason == "" {
			t.Fatalf("refusal: %+v %v", st, err)
		}
	})
}

// flaky is a fund company that loses the first request for each order.
type flaky struct {
	fund.Provider
	lost map[string]bool
}

func (f *flaky) Redeem(ctx context.Context, o fund.Order) (fund.Status, error) {
	if !f.lost[o.ID] {
		f.lost[o.ID] = true
		return fund.Status{}, fund.ErrNoAnswer
	}
	return f.Provider.Redeem(ctx, o)
}

func TestCheckOrder(t *testing.T) {
	l, _ := ledgertest.New(t)
	ctx := context.Background()
	const pan = "6228480000000001"
	c, err := l.CreateCard(ctx, ledger.NewCard{PAN: pan, Currency: "156", FundBalance: 100000})
	if err != nil {
		t.Fatal(err)
	}
	sim := fund.NewSimulator(fund.SimOptions{})
	p := &flaky{Provider: sim, lost: map[string]bool{}}
	day := fund.Day(time.Now())
	place := func(id string, amount int64, to fund.Provider) {
		rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		err := l.Do(ctx, func(tx *ledger.Tx) error {
			card, err := tx.LockCardByID(ctx, c.ID, day)
			if err != nil {
				return err
			}
			return tx.StartRedemption(ctx, card, ledger.NewRedemption{ID: id, Amount: amount, Purpose: ledger.PurposeShortfall, Day: day, Quota: 1000000, Fence: 1})
		})
		if err != nil {
			t.Fatal(err)
		}
		_, _ = to.Redeem(rctx, fund.Order{ID: id, Account: fund.Account(c.ID), Amount: amount, Currency: "156"})
	}
	place("order-lost-1", 1000, p) // lost: sent again by the check
	place("order-seen-2", 2000, p) // confirmed at the fund, pending here
	for _, id := range []string{"order-lost-1", "order-seen-2"} {
		if err := fund.CheckOrder(ctx, l, p, id, time.Second); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	card, err := l.Card(ctx, pan, day)
	if err != nil {
		t.Fatal(err)
	}
	if card.Cash != 3000 || card.Fund != 97000 {
		t.Fatalf("card after settling: cash %d fund %d", card.Cash, card.Fund)
	}
	// A fund company still deciding; then one that refuses.
	slow := fund.NewSimulator(fund.SimOptions{Latency: time.Hour})
	place("order-slow-3", 500, slow)
	if err := fund.CheckOrder(ctx, l, slow, "order-slow-3", time.Second); !errors.Is(err, fund.ErrStillPending) {
		t.Fatalf("a pending order: %v", err)
	}
	if o, _ := l.Order(ctx, "order-slow-3"); o.Checks != 1 {
		t.Fatalf("checks %d", o.Checks)
	}
	refusing := fund.NewSimulator(fund.SimOptions{FailRate: 1})
	if err := fund.CheckOrder(ctx, l, refusing, "order-slow-3", time.Second); err != nil {
		t.Fatal(err)
	}
	card, _ = l.Card(ctx, pan, day)
	if card.Cash != 3000 || card.Fund != 97000 || card.RedeemedToday != 3000 {
		t.Fatalf("card after a refusal: %+v", card)
	}
	// Settled orders and orders never placed need nothing.
	if err := fund.CheckOrder(ctx, l, p, "order-seen-2", time.Second); err != nil {
		t.Fatal(err)
	}
	if err := fund.CheckOrder(ctx, l, p, "order-never-9", time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestGatewayUnclearAnswers: only a definite refusal fails an order; any
// other non-200 leaves its fate unknown.
func TestGatewayUnclearAnswers(t *testing.T) {
	for _, tc := range []struct {
		method string
		status int
		failed bool
	}{
		{"GET", 429, false}, {"GET", 403, false}, {"GET", 500, false}, {"GET", 400, false},
		{"POST", 429, false}, {"POST", 408, false}, {"POST", 401, false}, {"POST", 503, false}, {"POST", 404, false},
		{"POST", 400, true}, {"POST", 409, true}, {"POST", 422, true},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(tc.status) }))
		g, _ := fund.NewGateway(srv.URL)
		var st fund.Status
		var err error
		if tc.method == "GET" {
			st, err = g.RedemptionStatus(context.Background(), "order-0001")
		} else {
			st, err = g.Redeem(context.Background(), order)
		}
		srv.Close()
		if failed := err == nil && st.State == fund.Failed; failed != tc.failed {
			t.Errorf("%s answered %d: state %q err %v; want failed=%v", tc.method, tc.status, st.State, err, tc.failed)
		}
	}
}
