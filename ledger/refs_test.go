package ledger_test

import (
	"context"
	"errors"
	"regexp"
	"testing"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
)

// TestCardRefs: every card gets its own opaque ref at issue, reads by ref
// see the same card as reads by PAN, and its orders carry the ref.
func TestCardRefs(t *testing.T) {
	l, _ := ledgertest.New(t)
	ctx := context.Background()
	format := regexp.MustCompile(`^crd_[0-9a-f]{24}$`)

	card := newCard(t, l, 2000, 500000)
	other, err := l.CreateCard(ctx, ledger.NewCard{PAN: "6228480000000002", Currency: "156"})
	if err != nil {
		t.Fatal(err)
	}
	if !format.MatchString(card.Ref) || !format.MatchString(other.Ref) || card.Ref == other.Ref {
		t.Fatalf("refs %q and %q: want two different crd_ and 24 hex digits", card.Ref, other.Ref)
	}

	byRef, err := l.CardByRef(ctx, card.Ref, day)
	if err != nil {
		t.Fatal(err)
	}
	byPAN, err := l.Card(ctx, pan, day)
	if err != nil {
		t.Fatal(err)
	}
	if byRef.ID != card.ID || byRef.Masked != "622848******0001" || byRef.Ref != card.Ref || byPAN.Ref != card.Ref || byRef.Cash != 2000 {
		t.Fatalf("by ref %+v, by PAN %+v, issued %+v", byRef, byPAN, card)
	}

	for _, ref := range []string{"", pan, "crd_000000000000000000000000", "crd_" + card.Ref[4:] + "0", "CRD_" + card.Ref[4:], "crd_' OR 1=1 --"} {
		if _, err := l.CardByRef(ctx, ref, day); !errors.Is(err, ledger.ErrUnknownCard) {
			t.Errorf("CardByRef(%q): %v, want ErrUnknownCard", ref, err)
		}
	}

	if err := inCard(t, l, func(tx *ledger.Tx, c *ledger.Card) error {
		if err := tx.Fence(ctx, c.ID, 1); err != nil {
			return err
		}
		return tx.StartRedemption(ctx, c, ledger.NewRedemption{ID: "order-ref", Amount: 100, Purpose: ledger.PurposeTransferOut, Day: day, Quota: 1000000, Fence: 1})
	}); err != nil {
		t.Fatal(err)
	}
	o, err := l.Order(ctx, "order-ref")
	if err != nil {
		t.Fatal(err)
	}
	os, err := l.CardOrders(ctx, card.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	if o.CardRef != card.Ref || len(os) != 1 || os[0].CardRef != card.Ref {
		t.Fatalf("order %+v, card's orders %+v: want card ref %s", o, os, card.Ref)
	}
}
