package ledger_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
)

// groupOf is a group of n fresh debits of amount, one per card of pans
// from the i-th on.
func groupOf(pans []string, from, n int, amount int64) []ledger.Find {
	fs := make([]ledger.Find, n)
	for j := range fs {
		s := fmt.Sprintf("%06d", stan.Add(1))
		k := ledger.Key{Bank: "default", Acquirer: "1234", STAN: s, Transmitted: "1125101010", Terminal: "T1", Class: "020", RRN: "RRN" + s}
		fs[j] = ledger.Find{Key: k, Serial: ledger.SerialKey(k.Bank, k.Acquirer, k.STAN, k.Terminal), CheckReversed: true,
			Amount: amount, PAN: pans[(from+j)%len(pans)]}
	}
	return fs
}

// debitGroup looks fs up and debits each card, in one transaction.
func debitGroup(ctx context.Context, l *ledger.Ledger, fs []ledger.Find) ([]int64, error) {
	var ids []int64
	err := l.Do(ctx, func(tx *ledger.Tx) error {
		lks, err := tx.LookupGroup(ctx, fs)
		if err != nil {
			return err
		}
		recs := make([]ledger.Record, len(fs))
		effects := make([][]ledger.Effect, len(fs))
		for i, lk := range lks {
			if lk.Prior != nil || lk.Card == nil {
				return fmt.Errorf("request %d: prior %v, card %v", i, lk.Prior, lk.Card)
			}
			if effects[i], err = lk.Card.Debit(ledger.KindPurchase, fs[i].Amount); err != nil {
				return err
			}
			recs[i] = record(lk.Card, "purchase", fs[i].Amount)
			recs[i].Key = fs[i].Key
		}
		ids, err = tx.SaveGroup(ctx, recs, effects)
		return err
	})
	return ids, err
}

func groupCards(t testing.TB, l *ledger.Ledger, n int, balance int64) []string {
	t.Helper()
	pans := make([]string, n)
	for i := range pans {
		pans[i] = fmt.Sprintf("6228481%09d", i)
		if _, err := l.CreateCard(context.Background(), ledger.NewCard{PAN: pans[i], Currency: "156", Balance: balance}); err != nil {
			t.Fatal(err)
		}
	}
	return pans
}

// TestGroup: a group's debits are saved together, each card's balance
// changed once per debit; one card named twice sees the first debit when
// the second is decided; a group whose summed postings overdraw a card is
// refused whole.
func TestGroup(t *testing.T) {
	l, pool := ledgertest.New(t)
	ctx := context.Background()
	pans := groupCards(t, l, 4, 1000)
	fs := groupOf(pans, 0, 6, 300) // cards 0 and 1 twice
	ids, err := debitGroup(ctx, l, fs)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("ids %v do not follow the group's order", ids)
		}
	}
	for i, want := range []int64{400, 400, 700, 700} {
		c, err := l.Card(ctx, pans[i], time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if c.Cash != want {
			t.Errorf("card %d: cash %d, want %d", i, c.Cash, want)
		}
	}
	// Twice more on card 0 (400 left) overdraws it: the schema refuses
	// the summed postings, and nothing of the group is kept.
	err = l.Do(ctx, func(tx *ledger.Tx) error {
		fs := groupOf(pans, 0, 1, 300)
		lks, err := tx.LookupGroup(ctx, fs)
		if err != nil {
			return err
		}
		eff, err := lks[0].Card.Debit(ledger.KindPurchase, 300)
		if err != nil {
			return err
		}
		other := groupOf(pans, 0, 1, 300)[0]
		r1, r2 := record(lks[0].Card, "purchase", 300), record(lks[0].Card, "purchase", 300)
		r1.Key, r2.Key = fs[0].Key, other.Key
		_, err = tx.SaveGroup(ctx, []ledger.Record{r1, r2}, [][]ledger.Effect{eff, eff})
		return err
	})
	if err == nil || !ledger.Refused(err) {
		t.Fatalf("two debits of 300 on 400 saved in one group: %v", err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM requests`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Errorf("%d requests stored, want 6", n)
	}
	if err := l.Audit(ctx); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkGroupCommit commits groups of debits on distinct cards, one
// group per transaction, on one connection; ns/op is per group, and
// debits/s counts the debits.
func BenchmarkGroupCommit(b *testing.B) {
	for _, size := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			l, _ := ledgertest.New(b)
			pans := groupCards(b, l, 1000, 1<<40)
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				if _, err := debitGroup(ctx, l, groupOf(pans, i*size, size, 1)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "debits/s")
		})
	}
}
