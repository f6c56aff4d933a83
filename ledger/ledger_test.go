package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
)

const pan = "6228480000000001"

func newCard(t *testing.T, l *ledger.Ledger, balance, fund int64) *ledger.Card {
	t.Helper()
	c, err := l.CreateCard(context.Background(), ledger.NewCard{PAN: pan, Currency: "156", Balance: balance, FundBalance: fund})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var stan atomic.Int64

// record returns a request record with a fresh key.
func record(card *ledger.Card, txnType string, amount int64) ledger.Record {
	s := fmt.Sprintf("%06d", stan.Add(1))
	return ledger.Record{
		Key:          ledger.Key{Bank: "default", Acquirer: "1234", STAN: s, Transmitted: "1125101010", Terminal: "T1", Class: "020", RRN: "RRN" + s},
		MTI:          "0200",
		Fingerprint:  []byte("f"),
		CardID:       card.ID,
		TxnType:      txnType,
		Amount:       amount,
		ResponseCode: "00",
		Response:     []byte("0210"),
	}
}

// post locks the card, lets plan decide, and saves the result.
func post(t *testing.T, l *ledger.Ledger, txnType string, amount int64, plan func(c *ledger.Card) ([]ledger.Effect, error)) (*ledger.Card, error) {
	t.Helper()
	var out *ledger.Card
	err := l.Do(context.Background(), func(tx *ledger.Tx) error {
		c, err := tx.LockCard(context.Background(), pan, time.Time{})
		if err != nil {
			return err
		}
		effects, err := plan(c)
		if err != nil {
			return err
		}
		out = c
		_, err = tx.Save(context.Background(), record(c, txnType, amount), effects)
		return err
	})
	return out, err
}

func mustBalances(t *testing.T, l *ledger.Ledger, balance, available, held, fund int64) {
	t.Helper()
	c, err := l.Card(context.Background(), pan, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Balance() != balance || c.Available() != available || c.Held != held || c.Fund != fund {
		t.Fatalf("balances: balance %d available %d held %d fund %d; want %d %d %d %d",
			c.Balance(), c.Available(), c.Held, c.Fund, balance, available, held, fund)
	}
	if err := l.Audit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestCreateCard(t *testing.T) {
	l, _ := ledgertest.New(t)
	ctx := context.Background()
	newCard(t, l, 10000, 500000)
	mustBalances(t, l, 10000, 10000, 0, 500000)

	_, err := l.CreateCard(ctx, ledger.NewCard{PAN: pan, Currency: "156"})
	if !errors.Is(err, ledger.ErrCardExists) {
		t.Fatalf("second card with one PAN: %v", err)
	}
	for _, bad := range []ledger.NewCard{
		{PAN: "12", Currency: "156"},
		{PAN: "62284800000000x1", Currency: "156"},
		{PAN: "6228480000000002", Currency: "CNY"},
		{PAN: "6228480000000002", Currency: "156", Balance: -1},
	} {
		if _, err := l.CreateCard(ctx, bad); !errors.Is(err, ledger.ErrInvalidCard) {
			t.Errorf("%+v: %v, want ErrInvalidCard", bad, err)
		}
	}
	if _, err := l.Card(ctx, "6228480000000009", time.Time{}); !errors.Is(err, ledger.ErrUnknownCard) {
		t.Fatalf("unknown card: %v", err)
	}
}

func TestPostings(t *testing.T) {
	l, _ := ledgertest.New(t)
	newCard(t, l, 10000, 0)
	expires := time.Now().Add(7 * 24 * time.Hour)

	// A hold lowers the available balance, not the balance.
	var hold ledger.Effect
	c, err := post(t, l, "purchase", 3000, func(c *ledger.Card) ([]ledger.Effect, error) {
		h, err := c.PlaceHold(3000, expires)
		hold = h
		return []ledger.Effect{h}, err
	})
	if err != nil || hold == nil {
		t.Fatal(err)
	}
	if c.Available() != 7000 {
		t.Fatalf("planned available %d", c.Available())
	}
	mustBalances(t, l, 10000, 7000, 3000, 0)

	// More than is available is refused before anything is written.
	_, err = post(t, l, "purchase", 8000, func(c *ledger.Card) ([]ledger.Effect, error) { return c.Debit(ledger.KindPurchase, 8000) })
	if !errors.Is(err, ledger.ErrInsufficientFunds) {
		t.Fatalf("overdraw: %v", err)
	}
	mustBalances(t, l, 10000, 7000, 3000, 0)

	// A debit takes from balance and available alike.
	if _, err := post(t, l, "purchase", 2000, func(c *ledger.Card) ([]ledger.Effect, error) { return c.Debit(ledger.KindPurchase, 2000) }); err != nil {
		t.Fatal(err)
	}
	mustBalances(t, l, 8000, 5000, 3000, 0)

	// A forced debit beyond the available balance runs into overdraft,
	// and the next credit repays it first.
	if _, err := post(t, l, "purchase", 6000, func(c *ledger.Card) ([]ledger.Effect, error) { return c.ForceDebit(ledger.KindCapture, 6000), nil }); err != nil {
		t.Fatal(err)
	}
	mustBalances(t, l, 2000, -1000, 3000, 0)
	if _, err := post(t, l, "refund", 1500, func(c *ledger.Card) ([]ledger.Effect, error) { return c.Credit(ledger.KindRefund, 1500), nil }); err != nil {
		t.Fatal(err)
	}
	mustBalances(t, l, 3500, 500, 3000, 0)
}

func TestSchemaRefusesWhatMustNeverHappen(t *testing.T) {
	l, pool := ledgertest.New(t)
	ctx := context.Background()
	c := newCard(t, l, 1000, 0)
	var cash, settlement int64
	if err := pool.QueryRow(ctx, `SELECT id FROM accounts WHERE card_id = $1 AND kind = 'cash'`, c.ID).Scan(&cash); err != nil {
		t.Fatal(err)
	}
	// Creates the settlement account as a side effect.
	if _, err := l.Card(ctx, pan, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT id FROM accounts WHERE kind = 'settlement'`).Scan(&settlement); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, sql string }{
		{"negative available balance", fmt.Sprintf(`INSERT INTO transfers (kind, debit_account, credit_account, currency, amount) VALUES ('purchase', %d, %d, '156', 1001)`, cash, settlement)},
		{"balance edited by hand", fmt.Sprintf(`UPDATE accounts SET balance = 999999 WHERE id = %d`, cash)},
		{"transfer in another currency", fmt.Sprintf(`INSERT INTO transfers (kind, debit_account, credit_account, currency, amount) VALUES ('purchase', %d, %d, '840', 1)`, cash, settlement)},
		{"transfer to nowhere", fmt.Sprintf(`INSERT INTO transfers (kind, debit_account, credit_account, currency, amount) VALUES ('purchase', %d, 999999, '156', 1)`, cash)},
		{"history rewritten", `UPDATE transfers SET amount = 1`},
		{"history deleted", `DELETE FROM transfers`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tag, err := pool.Exec(ctx, tc.sql)
			if err == nil && tag.RowsAffected() > 0 {
				t.Fatalf("%s was allowed", tc.sql)
			}
		})
	}

	// The same idempotency key twice, and two reversals of one request.
	rec := record(c, "purchase", 1)
	save := func(r ledger.Record) error {
		return l.Do(ctx, func(tx *ledger.Tx) error { _, err := tx.Save(ctx, r, nil); return err })
	}
	if err := save(rec); err != nil {
		t.Fatal(err)
	}
	if err := save(rec); err == nil {
		t.Fatal("a second request with the same key was saved")
	}
	var orig int64
	if err := pool.QueryRow(ctx, `SELECT id FROM requests`).Scan(&orig); err != nil {
		t.Fatal(err)
	}
	// Reversals of one original: each that moves money leaves less
	// standing, never more than the original, and a reversal is never
	// reversed.
	var lastReversal int64
	for _, tc := range []struct {
		stands int64
		ok     bool
	}{{2, false}, {1, false}, {0, true}, {0, false}} {
		r := record(c, "reversal", 1)
		r.Key.Class, r.MTI, r.Reverses, r.Stands = "040", "0400", orig, &tc.stands
		if err := save(r); (err == nil) != tc.ok {
			t.Fatalf("reversal leaving %d standing: %v", tc.stands, err)
		}
	}
	if err := pool.QueryRow(ctx, `SELECT max(id) FROM requests WHERE reverses IS NOT NULL`).Scan(&lastReversal); err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	r := record(c, "reversal", 1)
	r.Key.Class, r.MTI, r.Reverses, r.Stands = "040", "0400", lastReversal, &zero
	if err := save(r); err == nil {
		t.Fatal("a reversal of a reversal was saved")
	}
	// An answered request is final; one being decided is taken over only
	// once its time to answer has passed.
	for _, sql := range []string{
		fmt.Sprintf(`UPDATE requests SET response_code = '51' WHERE id = %d`, orig),
		fmt.Sprintf(`UPDATE requests SET state = 'deciding', response = NULL, response_code = NULL WHERE id = %d`, orig),
	} {
		if _, err := pool.Exec(ctx, sql); err == nil {
			t.Fatalf("%s was allowed", sql)
		}
	}
	deciding := record(c, "purchase", 5)
	var id int64
	if err := l.Do(ctx, func(tx *ledger.Tx) error {
		var err error
		id, _, err = tx.BeginDeciding(ctx, deciding, time.Hour)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE requests SET claim = 7 WHERE id = $1`, id); err == nil {
		t.Fatal("a request being decided was taken over before its time was up")
	}
	mustBalances(t, l, 1000, 1000, 0, 0)
}

// TestConcurrentDebitsNeverOverdraw races many debits on one card.
func TestConcurrentDebitsNeverOverdraw(t *testing.T) {
	l, _ := ledgertest.New(t)
	newCard(t, l, 10000, 0)
	var wg sync.WaitGroup
	var approved atomic.Int64
	for range 40 {
		wg.Go(func() {
			_, err := post(t, l, "purchase", 700, func(c *ledger.Card) ([]ledger.Effect, error) { return c.Debit(ledger.KindPurchase, 700) })
			switch {
			case err == nil:
				approved.Add(1)
			case !errors.Is(err, ledger.ErrInsufficientFunds):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if approved.Load() != 14 {
		t.Fatalf("%d debits of 7.00 approved on 100.00", approved.Load())
	}
	mustBalances(t, l, 200, 200, 0, 0)
}
