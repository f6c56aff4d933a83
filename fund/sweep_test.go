package fund_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/goldcard/goldcard/fund"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
)

func date(s string) time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return d
}

func TestCalendar(t *testing.T) {
	cal, err := fund.NewCalendar(map[int][]string{2026: {"2026-10-01", "2026-10-02", "2026-10-05", "2026-10-06", "2026-10-07"}})
	if err != nil {
		t.Fatal(err)
	}
	for day, trading := range map[string]bool{
		"2026-09-30": true, "2026-10-01": false, "2026-10-03": false, "2026-10-04": false, "2026-10-08": true, "2026-11-27": true, "2026-11-28": false,
	} {
		if got := cal.TradingDay(date(day)); got != trading {
			t.Errorf("%s trading %v", day, got)
		}
	}
	for from, next := range map[string]string{
		"2026-09-30": "2026-10-08", // across the holidays and a weekend
		"2026-11-27": "2026-11-30", // Friday to Monday
		"2026-11-25": "2026-11-26",
	} {
		if got := cal.NextTradingDay(date(from)).Format(time.DateOnly); got != next {
			t.Errorf("after %s: %s, want %s", from, got, next)
		}
	}
	if _, err := fund.NewCalendar(map[int][]string{2026: {"2026-13-01"}}); err == nil {
		t.Error("a bad date was accepted")
	}
}

func TestSweepAndConfirm(t *testing.T) {
	l, _ := ledgertest.New(t)
	ctx := context.Background()
	sim := fund.NewSimulator(fund.SimOptions{})
	mk := func(pan string, cash, held int64, threshold *int64, on bool) *ledger.Card {
		c, err := l.CreateCard(ctx, ledger.NewCard{PAN: pan, Currency: "156", Balance: cash})
		if err != nil {
			t.Fatal(err)
		}
		if held > 0 {
			err := l.Do(ctx, func(tx *ledger.Tx) error {
				card, err := tx.LockCardByID(ctx, c.ID, time.Time{})
				if err != nil {
					return err
				}
				h, err := card.PlaceHold(held, time.Now().Add(time.Hour))
				if err != nil {
					return err
				}
				_, err = tx.Save(ctx, ledger.Record{Key: ledger.Key{Bank: "b", STAN: pan[10:], Class: "010"}, MTI: "0100",
					Fingerprint: []byte{1}, CardID: card.ID, TxnType: "purchase", Amount: held, ResponseCode: "00", Response: []byte("x")},
					[]ledger.Effect{h})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := l.SetSweep(ctx, c.ID, on, threshold); err != nil {
			t.Fatal(err)
		}
		return c
	}
	own := int64(50000)
	rich := mk("6228480000001001", 350000, 0, nil, true)        // keeps the configured 1,000.00
	holder := mk("6228480000001002", 350000, 200000, nil, true) // 2,000.00 held is never swept
	mine := mk("6228480000001003", 350000, 0, &own, true)       // keeps its own 500.00
	mk("6228480000001004", 350000, 0, nil, false)               // sweeping off
	mk("6228480000001005", 100050, 0, nil, true)                // 0.50 over: under the minimum

	plan := fund.SweepPlan{Day: date("2026-09-30"), ConfirmOn: date("2026-10-08"), Threshold: 100000, MinSweep: 100}
	var confirms []ledger.SweepRecord
	n, err := fund.SweepDay(ctx, l, sim, plan, func(_ context.Context, s []ledger.SweepRecord) error {
		confirms = append(confirms, s...)
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("swept %d cards: %v", n, err)
	}
	want := map[int64]int64{rich.ID: 250000, holder.ID: 50000, mine.ID: 300000}
	for _, s := range confirms {
		if s.Amount != want[s.CardID] || !s.ConfirmOn.Equal(plan.ConfirmOn) {
			t.Errorf("card %d swept %d to confirm on %s; want %d", s.CardID, s.Amount, s.ConfirmOn, want[s.CardID])
		}
	}
	// Once per card per day, whatever happens.
	if n, err := fund.SweepDay(ctx, l, sim, plan, func(context.Context, []ledger.SweepRecord) error { return nil }); err != nil || n != 3 {
		t.Fatalf("a second run: %d %v", n, err)
	}
	c, _ := l.Card(ctx, "6228480000001001", time.Time{})
	if c.Balance() != 100000 || c.Fund != 0 {
		t.Fatalf("after the sweep: balance %d fund %d", c.Balance(), c.Fund)
	}

	id := fund.SweepID(rich.ID, plan.Day)
	if err := fund.ConfirmSweep(ctx, l, sim, id, date("2026-10-07"), time.Second); !errors.Is(err, fund.ErrTooEarly) {
		t.Fatalf("confirming before the next trading day: %v", err)
	}
	if err := fund.ConfirmSweep(ctx, l, sim, id, date("2026-10-08"), time.Second); err != nil {
		t.Fatal(err)
	}
	c, _ = l.Card(ctx, "6228480000001001", time.Time{})
	if c.Balance() != 100000 || c.Fund != 250000 {
		t.Fatalf("after confirmation: balance %d fund %d", c.Balance(), c.Fund)
	}
	// A refused subscription gives the money back.
	refusing := fund.NewSimulator(fund.SimOptions{FailRate: 1})
	mid := fund.SweepID(mine.ID, plan.Day)
	if err := fund.ConfirmSweep(ctx, l, refusing, mid, date("2026-10-08"), time.Second); err != nil {
		t.Fatal(err)
	}
	c, _ = l.Card(ctx, "6228480000001003", time.Time{})
	if c.Balance() != 350000 || c.Fund != 0 {
		t.Fatalf("after a refusal: balance %d fund %d", c.Balance(), c.Fund)
	}
}

func TestYield(t *testing.T) {
	l, _ := ledgertest.New(t)
	ctx := context.Background()
	// 0.4523 per 10,000 shares a day.
	const rate = 4523
	funds := []int64{123456789, 98765, 1, 55555555}
	var ids []int64
	for i, f := range funds {
		c, err := l.CreateCard(ctx, ledger.NewCard{PAN: "62284800000020" + string(rune('0'+i)) + "1", Currency: "156", FundBalance: f})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	day := date("2026-11-25")
	days, err := fund.YieldDay(ctx, l, day, rate)
	if err != nil || len(days) != 1 {
		t.Fatalf("yield: %v %v", days, err)
	}
	var total, paid int64
	for _, f := range funds {
		total += f
		paid += f * rate / ledger.YieldScale // each rounded down to the fen
	}
	d := days[0]
	if d.Shares != total || d.Paid != paid || d.Income != total*rate/ledger.YieldScale || d.Remainder != d.Income-paid {
		t.Fatalf("yield day %+v; want shares %d paid %d", d, total, paid)
	}
	if d.Remainder <= 0 {
		t.Fatalf("the roundings left nothing: %+v", d)
	}
	for i, id := range ids {
		_ = id
		c, _ := l.Card(ctx, "62284800000020"+string(rune('0'+i))+"1", time.Time{})
		if want := funds[i] + funds[i]*rate/ledger.YieldScale; c.Fund != want {
			t.Errorf("card %d fund %d, want %d", i, c.Fund, want)
		}
	}
	// Once per day.
	if again, err := fund.YieldDay(ctx, l, day, rate); err != nil || again[0].Remainder != d.Remainder {
		t.Fatalf("a second run: %v %v", again, err)
	}
	c, _ := l.Card(ctx, "6228480000002001", time.Time{})
	if c.Fund != funds[0]+funds[0]*rate/ledger.YieldScale {
		t.Fatalf("paid twice: %d", c.Fund)
	}
}

// TestDailyPages: the sweep and the yield of more cards than one page
// locks (in two ranges, as two batch tasks have them) pay every card once
// and only the cards in range, and a second run pays none again.
func TestDailyPages(t *testing.T) {
	l, _ := ledgertest.New(t)
	ctx := context.Background()
	sim := fund.NewSimulator(fund.SimOptions{})
	const cards = 250
	var (
		ids  []int64
		pans = map[int64]string{}
	)
	for i := range cards {
		pan := fmt.Sprintf("622848%010d", 3000+i)
		c, err := l.CreateCard(ctx, ledger.NewCard{PAN: pan, Currency: "156", Balance: 150000 + int64(i), FundBalance: 1_000_000})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.SetSweep(ctx, c.ID, i%10 != 0, nil); err != nil {
			t.Fatal(err)
		}
		ids, pans[c.ID] = append(ids, c.ID), pan
	}
	cut := ids[cards/2]
	plan := fund.SweepPlan{Day: date("2026-09-30"), ConfirmOn: date("2026-10-08"), Threshold: 100000, MinSweep: 100}
	var confirms []ledger.SweepRecord
	note := func(_ context.Context, s []ledger.SweepRecord) error { confirms = append(confirms, s...); return nil }
	for i, r := range [][2]int64{{0, cut}, {cut, math.MaxInt64}, {0, cut}} {
		if i == 2 {
			// Blocked, and another no longer sweeping, after their sweep
			// was made: the range run again still sends theirs.
			if err := l.SetCardStatus(ctx, ids[1], ledger.StatusBlocked); err != nil {
				t.Fatal(err)
			}
			if err := l.SetSweep(ctx, ids[2], false, nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := fund.SweepRange(ctx, l, sim, plan, r[0], r[1], note); err != nil {
			t.Fatal(err)
		}
		if err := fund.YieldRange(ctx, l, date("2026-09-30"), 4523, r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[int64]int{}
	for _, s := range confirms {
		seen[s.CardID]++
		if want := 50000 + s.CardID - ids[0]; s.Amount != want {
			t.Errorf("card %d swept %d, want %d", s.CardID, s.Amount, want)
		}
	}
	for i, id := range ids {
		want := 1
		if i%10 == 0 {
			want = 0 // sweeping off
		} else if id <= cut {
			want = 2 // its range was run twice: the pending sweep is sent again, not made again
		}
		if seen[id] != want {
			t.Errorf("card %d confirmed %d times, want %d", id, seen[id], want)
		}
		c, err := l.Card(ctx, pans[id], time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if wantFund := int64(1_000_000 + 1_000_000*4523/ledger.YieldScale); c.Fund != wantFund {
			t.Errorf("card %d fund %d, want %d (one day's yield)", id, c.Fund, wantFund)
		}
	}
}
