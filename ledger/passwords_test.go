package ledger_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
)

// A bcrypt hash as the schema takes it (the password is not this test's).
var bcryptHash = "$2a$12$" + strings.Repeat("A", 53)

// TestCardPasswords: an operator's password must be changed at the next
// sign-in; failed sign-ins in a row lock signing in, concurrent ones all
// counted; a good one, or a new password, lifts the lock; what is kept is
// a bcrypt hash and nothing else.
func TestCardPasswords(t *testing.T) {
	l, pool := ledgertest.New(t)
	ctx := context.Background()
	card := newCard(t, l, 100, 0)
	if _, err := l.CardPasswordOf(ctx, card.ID); !errors.Is(err, ledger.ErrNoPassword) {
		t.Fatalf("a card without a password: %v", err)
	}
	if err := l.SetCardPassword(ctx, 999999, bcryptHash, "li.wei"); !errors.Is(err, ledger.ErrUnknownCard) {
		t.Fatalf("an unknown card: %v", err)
	}
	if err := l.SetCardPassword(ctx, card.ID, "secret1234", "li.wei"); err == nil {
		t.Fatal("a password in the clear was kept")
	}
	if err := l.SetCardPassword(ctx, card.ID, bcryptHash, "li.wei"); err != nil {
		t.Fatal(err)
	}
	p, err := l.CardPasswordOf(ctx, card.ID)
	if err != nil || !p.MustChange || p.Failures != 0 || p.Locked(time.Now()) {
		t.Fatalf("after an operator set it: %+v %v", p, err)
	}
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if _, err := l.SignInFailed(ctx, card.ID, 5, time.Hour); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if p, _ = l.CardPasswordOf(ctx, card.ID); p.Failures != 5 || !p.Locked(time.Now()) || p.Locked(time.Now().Add(2*time.Hour)) {
		t.Fatalf("after five failures at once: %+v", p)
	}
	if err := l.SignedIn(ctx, card.ID); err != nil {
		t.Fatal(err)
	}
	if p, _ = l.CardPasswordOf(ctx, card.ID); p.Failures != 0 || p.Locked(time.Now()) {
		t.Fatalf("after a good sign-in: %+v", p)
	}
	if _, err := l.SignInFailed(ctx, card.ID, 1, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := l.SetCardPassword(ctx, card.ID, bcryptHash, "zhang.min"); err != nil {
		t.Fatal(err)
	}
	if p, _ = l.CardPasswordOf(ctx, card.ID); p.Locked(time.Now()) || !p.MustChange {
		t.Fatalf("after an operator set it again: %+v", p)
	}
	if err := l.ChangeCardPassword(ctx, card.ID, "$2a$12$"+strings.Repeat("B", 53)); err != nil {
		t.Fatal(err)
	}
	if p, _ = l.CardPasswordOf(ctx, card.ID); p.MustChange || p.Hash == bcryptHash {
		t.Fatalf("after the cardholder changed it: %+v", p)
	}
	var setBy string
	if err := pool.QueryRow(ctx, `SELECT set_by FROM card_passwords WHERE card_id = $1`, card.ID).Scan(&setBy); err != nil || setBy != "zhang.min" {
		t.Fatalf("set by %q (%v)", setBy, err)
	}
}
