package ledger_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"

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
