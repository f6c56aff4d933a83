package ledger_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
)

var day = time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)

// inCard runs fn on the locked card in one transaction.
func inCard(t *testing.T, l *ledger.Ledger, fn func(tx *ledger.Tx, c *ledger.Card) error) error {
	t.Helper()
	ctx := context.Background()
	return l.Do(ctx, func(tx *ledger.Tx) error {
		c, err := tx.LockCard(ctx, pan, day)
		if err != nil {
			return err
		}
		return fn(tx, c)
	})
}

func TestRedemptions(t *testing.T) {
	l, _ := ledgertest.New(t)
	ctx := context.Background()
	card := newCard(t, l, 2000, 500000)
	start := func(id string, amount, quota, fence int64) error {
		return inCard(t, l, func(tx *ledger.Tx, c *ledger.Card) error {
			if err := tx.Fence(ctx, c.ID, fence); err != nil {
				return err
			}
			return tx.StartRedemption(ctx, c, ledger.NewRedemption{ID: id, Amount: amount, Purpose: ledger.PurposeShortfall, Day: day, Quota: quota, Fence: fence})
		})
	}
	readCard := func() *ledger.Card {
		c, err := l.Card(ctx, pan, day)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	if err := start("order-0001", 28000, 1000000, 10); err != nil {
		t.Fatal(err)
	}
	c := readCard()
	if c.Fund != 472000 || c.RedeemedToday != 28000 || c.Cash != 2000 {
		t.Fatalf("after placing: %+v", c)
	}
	var landed bool
	if err := inCard(t, l, func(tx *ledger.Tx, c *ledger.Card) (err error) {
		landed, err = tx.ConfirmRedemption(ctx, c, "order-0001")
		return err
	}); err != nil || !landed {
		t.Fatalf("confirm: %v %v", landed, err)
	}
	if c := readCard(); c.Cash != 30000 || c.Fund != 472000 {
		t.Fatalf("after confirming: %+v", c)
	}
	// Resolving again changes nothing.
	if err := inCard(t, l, func(tx *ledger.Tx, c *ledger.Card) (err error) {
		landed, err = tx.FailRedemption(ctx, c, "order-0001", "late refusal")
		return err
	}); err != nil || landed {
		t.Fatalf("failing a confirmed order: %v %v", landed, err)
	}

	// A refused order gives shares and quota back.
	if err := start("order-0002", 5000, 1000000, 11); err != nil {
		t.Fatal(err)
	}
	if err := inCard(t, l, func(tx *ledger.Tx, c *ledger.Card) (err error) {
		landed, err = tx.FailRedemption(ctx, c, "order-0002", "fund closed")
		return err
	}); err != nil || !landed {
		t.Fatalf("fail: %v %v", landed, err)
	}
	if c := readCard(); c.Fund != 472000 || c.RedeemedToday != 28000 {
		t.Fatalf("after failing: %+v", c)
	}
	o, err := l.Order(ctx, "order-0002")
	if err != nil || o.State != ledger.OrderFailed || o.LastError != "fund closed" {
		t.Fatalf("order: %+v %v", o, err)
	}

	// Limits: the quota, the fund, and an older lock's token.
	if err := start("order-0003", 3000, 30000, 12); !errors.Is(err, ledger.ErrQuotaExceeded) {
		t.Fatalf("over quota: %v", err)
	}
	if err := start("order-0004", 472001, 10000000, 12); !errors.Is(err, ledger.ErrInsufficientFunds) {
		t.Fatalf("over the fund: %v", err)
	}
	if err := start("order-0005", 100, 10000000, 9); !errors.Is(err, ledger.ErrFenced) {
		t.Fatalf("stale token: %v", err)
	}

	if err := start("order-0006", 100, 10000000, 13); err != nil {
		t.Fatal(err)
	}
	if ids, err := l.PendingOrders(ctx); err != nil || len(ids) != 1 || ids[0] != "order-0006" {
		t.Fatalf("pending orders: %v %v", ids, err)
	}
	if err := l.RecordOrderCheck(ctx, "order-0006", "still pending"); err != nil {
		t.Fatal(err)
	}
	if o, _ := l.Order(ctx, "order-0006"); o.Checks != 1 || o.LastError != "still pending" {
		t.Fatalf("order after a check: %+v", o)
	}
	if os, err := l.CardOrders(ctx, card.ID, 10); err != nil || len(os) != 3 {
		t.Fatalf("card orders: %d %v", len(os), err)
	}
}

func TestExpireHolds(t *testing.T) {
	l, pool := ledgertest.New(t)
	ctx := context.Background()
	newCard(t, l, 10000, 0)
	for _, validity := range []time.Duration{-time.Minute, -time.Second, time.Hour} {
		_, err := post(t, l, "purchase", 1000, func(c *ledger.Card) ([]ledger.Effect, error) {
			h, err := c.PlaceHold(1000, time.Now().Add(validity))
			return []ledger.Effect{h}, err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	mustBalances(t, l, 10000, 7000, 3000, 0)
	n, err := l.ExpireHolds(ctx, 100)
	if err != nil || n != 2 {
		t.Fatalf("expired %d, %v", n, err)
	}
	mustBalances(t, l, 10000, 9000, 1000, 0)
	if _, err := pool.Exec(ctx, `TRUNCATE holds`); err == nil {
		t.Fatal("TRUNCATE of history was allowed")
	}
}
