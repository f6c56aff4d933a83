package ledger_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
)

// lookup finds what is stored under r's key.
func lookup(t *testing.T, l *ledger.Ledger, r ledger.Record) *ledger.Prior {
	t.Helper()
	var p *ledger.Prior
	err := l.Do(context.Background(), func(tx *ledger.Tx) error {
		lk, err := tx.LookupRequest(context.Background(), ledger.Find{Key: r.Key, Serial: "s"})
		if lk != nil {
			p = lk.Prior
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRequestBeingDecided: a request being decided is seen as such under
// its key; it is finished under its claim, released with a 91, or taken
// over once its time is up, and a decider whose request was taken over
// cannot write.
func TestRequestBeingDecided(t *testing.T) {
	l, _ := ledgertest.New(t)
	ctx := context.Background()
	c := newCard(t, l, 1000, 0)
	begin := func(r ledger.Record, within time.Duration) (int64, int64) {
		t.Helper()
		var id, claim int64
		if err := l.Do(ctx, func(tx *ledger.Tx) error {
			var err error
			id, claim, err = tx.BeginDeciding(ctx, r, within)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return id, claim
	}
	finish := func(r ledger.Record, over *ledger.Prior) error {
		return l.Do(ctx, func(tx *ledger.Tx) error {
			r.Over = over
			_, err := tx.Save(ctx, r, nil)
			return err
		})
	}

	t.Run("finished by its decider, waited for by a copy", func(t *testing.T) {
		r := record(c, "purchase", 10)
		id, claim := begin(r, time.Hour)
		p := lookup(t, l, r)
		if p == nil || p.State != ledger.StateDeciding || p.Claim != claim || p.Expired || p.Response != nil {
			t.Fatalf("being decided: %+v", p)
		}
		done := make(chan *ledger.Prior, 1)
		go func() {
			got, err := l.AwaitDecision(ctx, id)
			if err != nil {
				t.Error(err)
			}
			done <- got
		}()
		if err := finish(r, p); err != nil {
			t.Fatal(err)
		}
		if got := <-done; got.State != ledger.StateAnswered || string(got.Response) != string(r.Response) {
			t.Fatalf("the copy saw %+v", got)
		}
		if err := finish(r, p); !errors.Is(err, ledger.ErrClaimLost) {
			t.Fatalf("finishing twice: %v", err)
		}
	})

	t.Run("released, then decided afresh by a repeat", func(t *testing.T) {
		r := record(c, "purchase", 10)
		id, claim := begin(r, time.Hour)
		if ok, err := l.Release(ctx, id, claim+1, "91", []byte("0210/91")); err != nil || ok {
			t.Fatalf("released under another claim: %v %v", ok, err)
		}
		if ok, err := l.Release(ctx, id, claim, "91", []byte("0210/91")); err != nil || !ok {
			t.Fatalf("releasing: %v %v", ok, err)
		}
		p := lookup(t, l, r)
		if p.State != ledger.StateReleased || p.ResponseCode != "91" {
			t.Fatalf("released: %+v", p)
		}
		if err := finish(r, p); err != nil {
			t.Fatalf("a repeat deciding it afresh: %v", err)
		}
		if p := lookup(t, l, r); p.State != ledger.StateAnswered || p.ResponseCode != "00" {
			t.Fatalf("decided afresh: %+v", p)
		}
	})

	t.Run("its decider gone", func(t *testing.T) {
		r := record(c, "purchase", 10)
		_, claim := begin(r, 0)
		p := lookup(t, l, r)
		if !p.Expired {
			t.Fatalf("past its time: %+v", p)
		}
		// A repeat takes it over; the late decider cannot write.
		if err := finish(r, p); err != nil {
			t.Fatal(err)
		}
		late := &ledger.Prior{ID: p.ID, State: ledger.StateDeciding, Claim: claim}
		if err := finish(r, late); !errors.Is(err, ledger.ErrClaimLost) {
			t.Fatalf("the late decider wrote: %v", err)
		}
	})

	t.Run("a request answered is never replaced", func(t *testing.T) {
		r := record(c, "purchase", 10)
		if err := finish(r, nil); err != nil {
			t.Fatal(err)
		}
		p := lookup(t, l, r)
		declined := r
		declined.ResponseCode, declined.Response = "51", []byte("0210/51")
		if err := finish(declined, p); err == nil {
			t.Fatal("an answered request was replaced")
		}
	})
	mustBalances(t, l, 1000, 1000, 0, 0)
}

// TestKeyDigest: the digest the migration gave requests answered before
// keys were configurable is the one a bank keyed by DE32, DE11, DE7 and
// DE41 computes.
func TestKeyDigest(t *testing.T) {
	_, pool := ledgertest.New(t)
	k := ledger.Key{Bank: "acme", Class: "020", Acquirer: "1234", STAN: "000042", Transmitted: "1201101010", Terminal: "T1",
		Fields: []string{ledger.FieldTerminal, ledger.FieldTransmitted, ledger.FieldSTAN, ledger.FieldAcquirer}}
	var sql []byte
	if err := pool.QueryRow(context.Background(), `SELECT substring(sha256(convert_to(concat_ws(chr(31),
		$1::text, $2::text, 'acquirer=' || $3, 'stan=' || $4, 'transmitted=' || $5, 'terminal=' || $6), 'UTF8')) FROM 1 FOR 16)`,
		k.Bank, k.Class, k.Acquirer, k.STAN, k.Transmitted, k.Terminal).Scan(&sql); err != nil {
		t.Fatal(err)
	}
	if string(sql) != string(k.Digest()) {
		t.Fatalf("digest %x, the migration's %x", k.Digest(), sql)
	}
	if d := (ledger.Key{Bank: "acme", Class: "020", STAN: "000042"}).Digest(); string(d) == string(k.Digest()) {
		t.Fatal("keys of different fields share a digest")
	}
}
