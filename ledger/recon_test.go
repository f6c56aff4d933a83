package ledger_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
)

// bankRows is a settlement file held in memory.
type bankRows struct {
	rows []ledger.BankRow
	i    int
}

func (b *bankRows) Next() bool          { b.i++; return b.i <= len(b.rows) }
func (b *bankRows) Row() ledger.BankRow { return b.rows[b.i-1] }
func (b *bankRows) Err() error          { return nil }

func stranger(stan string) ledger.BankRow {
	return ledger.BankRow{Line: 2, Acquirer: "1234", Terminal: "ATM00009", STAN: stan, RRN: "000000" + stan, Transmitted: "1125101010",
		MTI: "0200", Processing: "000000", Amount: 700, Currency: "156"}
}

// TestRunsOfADayTakeTurns: two files of one bank and date run at once go
// one after the other, so the later replaces the earlier: only its break
// is open, the earlier's matched. Run without turns, each would match only
// what the other had not committed yet, and both breaks would stay open.
func TestRunsOfADayTakeTurns(t *testing.T) {
	l, _ := ledgertest.New(t)
	ctx := context.Background()
	sum := sha256.Sum256(nil)
	info := ledger.RunInfo{Bank: "default", BusinessDate: day, Format: "csv", Digest: func() []byte { return sum[:] }, RunBy: "test"}
	for round := range 5 {
		var wg sync.WaitGroup
		runs := make([]ledger.Run, 2)
		errs := make([]error, 2)
		for i := range 2 {
			wg.Go(func() {
				runs[i], errs[i] = l.ReconcileBank(ctx, info, &bankRows{rows: []ledger.BankRow{stranger(fmt.Sprintf("%02d%04d", round, i))}})
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		later := runs[0]
		if runs[1].ID > later.ID {
			later = runs[1]
		}
		var open []ledger.Case
		if err := l.EachCase(ctx, ledger.CaseFilter{Source: "bank", State: "open"}, func(c ledger.Case) error { open = append(open, c); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(open) != 1 || open[0].LastRun != later.ID {
			t.Fatalf("round %d: open cases %+v, want only run %d's", round, open, later.ID)
		}
	}
}

// TestOneOperatorsDailyLimitHoldsUnderRaces: one operator adjusting
// eight cases of eight days at once posts alone no more than the
// four-eyes amount in all; the rest wait for a second operator.
func TestOneOperatorsDailyLimitHoldsUnderRaces(t *testing.T) {
	l, _ := ledgertest.New(t)
	ctx := context.Background()
	sum := sha256.Sum256(nil)
	var cases []int64
	for i := range 8 {
		d := day.AddDate(0, 0, -i)
		// A card each: nothing of a card's own serialises them.
		p := fmt.Sprintf("62284800000077%02d", i)
		if _, err := l.CreateCard(ctx, ledger.NewCard{PAN: p, Currency: "156", Balance: 100000}); err != nil {
			t.Fatal(err)
		}
		err := l.Do(ctx, func(tx *ledger.Tx) error {
			c, err := tx.LockCard(ctx, p, d)
			if err != nil {
				return err
			}
			effects, err := c.Debit(ledger.KindPurchase, 90000)
			if err != nil {
				return err
			}
			rec := record(c, ledger.KindPurchase, 90000)
			rec.BusinessDate = d
			_, err = tx.Save(ctx, rec, effects)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		run, err := l.ReconcileBank(ctx, ledger.RunInfo{Bank: "default", BusinessDate: d, Format: "csv", Digest: func() []byte { return sum[:] }, RunBy: "test"},
			&bankRows{})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.EachCase(ctx, ledger.CaseFilter{Run: run.ID}, func(c ledger.Case) error { cases = append(cases, c.ID); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if len(cases) != 8 {
		t.Fatalf("%d cases, want one a day", len(cases))
	}
	var wg sync.WaitGroup
	adj := make([]ledger.Adjustment, len(cases))
	errs := make([]error, len(cases))
	for i, id := range cases {
		wg.Go(func() {
			adj[i], errs[i] = l.Adjust(ctx, ledger.AdjustRequest{Case: id, Debit: "settlement", Credit: "cash", Amount: 90000,
				Reason: "not settled by the bank", Operator: "mallory", FourEyesAbove: 100000})
		})
	}
	wg.Wait()
	alone := int64(0)
	for i := range cases {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if adj[i].State == "posted" {
			alone += adj[i].Amount
		}
	}
	if alone > 100000 {
		t.Fatalf("one operator posted %d alone, over the four-eyes amount", alone)
	}
}

// fundRows is a confirmation file held in memory.
type fundRows struct {
	rows []ledger.FundRow
	i    int
}

func (f *fundRows) Next() bool          { f.i++; return f.i <= len(f.rows) }
func (f *fundRows) Row() ledger.FundRow { return f.rows[f.i-1] }
func (f *fundRows) Err() error          { return nil }

// TestFundFileAheadOfASweepsConfirmation: a subscription pending until
// its confirmation day, which the fund company's file already confirms,
// agrees with it and is left to its confirmation; one past its day is
// settled by the file.
func TestFundFileAheadOfASweepsConfirmation(t *testing.T) {
	l, pool := ledgertest.New(t)
	ctx := context.Background()
	if err := l.EnsureSystemAccounts(ctx, "156"); err != nil {
		t.Fatal(err)
	}
	card := newCard(t, l, 0, 0)
	today := time.Now().In(shanghai(t))
	future := time.Date(today.Year(), today.Month(), today.Day()+3, 0, 0, 0, 0, time.UTC)
	past := time.Date(today.Year(), today.Month(), today.Day()-1, 0, 0, 0, 0, time.UTC)
	for _, s := range []struct {
		id      string
		day, on time.Time
	}{{"SWEEP-AHEAD", past.AddDate(0, 0, -1), future}, {"SWEEP-LATE0", past.AddDate(0, 0, -2), past}} {
		if _, err := pool.Exec(ctx, `INSERT INTO sweeps (id, card_id, day, amount, currency, confirm_on) VALUES ($1, $2, $3, 100, '156', $4)`,
			s.id, card.ID, s.day, s.on); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(nil)
	for _, id := range []string{"SWEEP-AHEAD", "SWEEP-LATE0"} {
		s, err := l.SweepByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		run, err := l.ReconcileFund(ctx, ledger.RunInfo{BusinessDate: s.Day, Format: "fund-csv", Digest: func() []byte { return sum[:] }, RunBy: "test"},
			&fundRows{rows: []ledger.FundRow{{Line: 2, OrderID: id, Kind: "subscription", Amount: 100, Currency: "156", Status: "confirmed"}}})
		if err != nil {
			t.Fatal(err)
		}
		after, err := l.SweepByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		wantSettled, wantState := int64(0), ledger.SweepPending
		if id == "SWEEP-LATE0" {
			wantSettled, wantState = 1, "confirmed"
		}
		if run.Matched != 1 || run.Breaks() != 0 || run.Settled != wantSettled || after.State != wantState {
			t.Fatalf("%s: run %+v, sweep %s; want matched, %d settled, %s", id, run, after.State, wantSettled, wantState)
		}
	}
}

func shanghai(t *testing.T) *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}
