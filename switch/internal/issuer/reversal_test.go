package issuer_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/locks"
	"github.com/goldcard/goldcard/locks/etcdtest"
	"github.com/goldcard/goldcard/switch/internal/daemon"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

func cardOf(t *testing.T, l *ledger.Ledger, pan string, balance int64) {
	t.Helper()
	if _, err := l.CreateCard(context.Background(), ledger.NewCard{PAN: pan, Currency: "156", Balance: balance}); err != nil {
		t.Fatal(err)
	}
}

func balanceOf(t *testing.T, l *ledger.Ledger, pan string) (balance, available int64) {
	t.Helper()
	c, err := l.Card(context.Background(), pan, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return c.Balance(), c.Available()
}

func de90Of(mti string, f map[int]string) string {
	return mti + f[11] + f[7] + fmt.Sprintf("%011s", f[32]) + "00000000000"
}

// TestDE90OfAnotherDayWaits: with the default txn_key (no DE7), a
// reversal whose DE90 names a DE7 the switch has not seen matches another
// transmission of the original only of the same local date: an early
// reversal of a withdrawal that never reached the switch does not give
// back an old withdrawal of the same amount whose STAN the terminal has
// come round to again, and its own original, arriving late, is declined.
func TestDE90OfAnotherDayWaits(t *testing.T) {
	t.Parallel()
	srv, l := switchtest.StartServer(t)
	const pan = "6228480000019001"
	cardOf(t, l, pan, 100000)
	bank := switchtest.ConnectBank(t, srv.BankAddr("default").String())

	// Days ago: ATM cash 100.00, STAN 000123.
	old := bank.Fields(map[int]string{2: pan, 3: "010000", 4: "000000010000", 7: "1101100000", 11: "000123",
		12: "100000", 13: "1101", 37: "110110000001"})
	switchtest.WantCode(t, bank.Send("0200", old), "00")

	// Today the terminal's STAN is 000123 again; the withdrawal of 100.00
	// never reaches the switch and the acquirer reverses it.
	lost := bank.Fields(map[int]string{2: pan, 3: "010000", 4: "000000010000", 7: "1105100000", 11: "000123",
		12: "100000", 13: "1105", 37: "110510000009"})
	rev := bank.Fields(map[int]string{2: pan, 3: "010000", 4: "000000010000", 11: "000777", 12: "100005", 13: "1105",
		37: lost[37], 90: de90Of("0200", lost)})
	switchtest.WantCode(t, bank.Send("0420", rev), "00")
	if b, _ := balanceOf(t, l, pan); b != 90000 {
		t.Errorf("balance %d after a reversal whose original was never seen; want 90000 (nothing moves): it gave back the old withdrawal", b)
	}
	// Its original arrives late: it was reversed first, so 12.
	if r := bank.Send("0200", lost); r[39] != "12" {
		t.Errorf("the reversed withdrawal arriving late was answered %s, want 12", r[39])
	}
}

// TestEarlyReversalOfACompletion: a completion (0220) that arrives after
// a partial reversal naming it posts what the reversal says stands, and a
// later full reversal gives back only that: no money the card never paid.
func TestEarlyReversalOfACompletion(t *testing.T) {
	t.Parallel()
	srv, l := switchtest.StartServer(t)
	const pan = "6228480000019002"
	cardOf(t, l, pan, 100000)
	bank := switchtest.ConnectBank(t, srv.BankAddr("default").String())

	completion := bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000010000"})
	// A partial reversal of the completion arrives first: 60.00 of 100.00 stands.
	partial := bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000010000", 37: completion[37],
		90: de90Of("0220", completion), 95: "000000006000000000006000D00000000D00000000"})
	switchtest.WantCode(t, bank.Send("0420", partial), "00")
	switchtest.WantCode(t, bank.Send("0220", completion), "00")
	if b, _ := balanceOf(t, l, pan); b != 94000 {
		t.Errorf("balance %d after a completion of 100.00 of which a reversal says 60.00 stands; want 94000", b)
	}
	// Now a full reversal of the completion.
	full := bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000010000", 37: completion[37],
		90: de90Of("0220", completion)})
	switchtest.WantCode(t, bank.Send("0420", full), "00")
	if b, _ := balanceOf(t, l, pan); b > 100000 {
		t.Errorf("balance %d after a completion fully reversed on a card that opened with 100000: money created", b)
	}
}

// TestReversalWithoutDE90FindsItsOwn: of two transactions with one STAN
// and RRN (another local time: another transaction), a reversal without
// DE90 gives back the one of its own local date and time and amount, not
// the newest.
func TestReversalWithoutDE90FindsItsOwn(t *testing.T) {
	t.Parallel()
	srv, l := switchtest.StartServer(t)
	const pan = "6228480000019003"
	cardOf(t, l, pan, 100000)
	bank := switchtest.ConnectBank(t, srv.BankAddr("default").String())

	a := bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000005000", 12: "090000"})
	switchtest.WantCode(t, bank.Send("0200", a), "00")
	b := map[int]string{}
	for k, v := range a {
		b[k] = v
	}
	b[4], b[12] = "000000000500", "090500"
	switchtest.WantCode(t, bank.Send("0200", b), "00")
	// The reversal of a (its own STAN, RRN, amount, local date and time).
	switchtest.WantCode(t, bank.Send("0400", a), "00")
	if got, _ := balanceOf(t, l, pan); got != 100000-500 {
		t.Errorf("balance %d after 50.00 and 5.00 and a reversal of the 50.00; want %d", got, 100000-500)
	}
}

// firstLockHeld holds the first Lock it is asked for until a second has
// been taken, so that a second request for the card gets the lock first.
type firstLockHeld struct {
	inner   *locks.Locker
	calls   atomic.Int32
	waiting chan struct{} // closed when the first caller waits
	second  chan struct{} // closed when the second has its lock
}

func (h *firstLockHeld) Lock(ctx context.Context, key string) (*locks.Lock, error) {
	switch h.calls.Add(1) {
	case 1:
		close(h.waiting)
		select {
		case <-h.second:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case 2:
		k, err := h.inner.Lock(ctx, key)
		close(h.second)
		return k, err
	}
	return h.inner.Lock(ctx, key)
}

// TestCopyLookedUpBeforeItsOriginalStored: a copy, on another switch
// (on one switch a card's requests take turns), whose first look-up came
// before its original was stored as being decided, and which takes the
// card's lock first, decides; the original, finding it answered or
// released under its key, takes its answer. One transaction, one
// redemption order, one answer, even when the fund company refuses.
func TestCopyLookedUpBeforeItsOriginalStored(t *testing.T) {
	client := etcdtest.New(t, 1).Client()
	inner := locks.New(client, locks.Options{TTL: 2 * time.Second})
	t.Cleanup(func() { _ = inner.Close() })
	for _, tc := range []struct{ name, rate string }{{"fund refuses", "1"}, {"fund confirms", "0"}} {
		t.Run(tc.name, func(t *testing.T) {
			hl := &firstLockHeld{inner: inner, waiting: make(chan struct{}), second: make(chan struct{})}
			fundKV := `{"provider":"simulator","simulator_latency":"10ms","simulator_fail_rate":` + tc.rate + `}`
			srv, l := switchtest.StartServerWith(t, daemon.Parts{Locker: hl}, "fund", fundKV)
			peer, _ := switchtest.StartServerWith(t, daemon.Parts{Locker: hl, Pool: l.Pool()}, "fund", fundKV)
			const pan = "6228480000019005"
			if _, err := l.CreateCard(context.Background(), ledger.NewCard{PAN: pan, Currency: "156", Balance: 0, FundBalance: 10000}); err != nil {
				t.Fatal(err)
			}
			one, two := switchtest.ConnectBank(t, srv.BankAddr("default").String()), switchtest.ConnectBank(t, peer.BankAddr("default").String())
			f := one.Fields(map[int]string{2: pan, 3: "000000", 4: "000000005000"})
			orig := sendAsync(t, one, "0200", f)
			<-hl.waiting // the original has looked up and waits for the lock
			copied := sendAsync(t, two, "0201", f)
			o, c := packed(t, <-orig), packed(t, <-copied)
			if string(o) != string(c) {
				t.Errorf("one transaction, two answers:\n%s\n%s", o, c)
			}
			card, err := l.Card(context.Background(), pan, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			orders, err := l.CardOrders(context.Background(), card.ID, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(orders) != 1 {
				t.Errorf("%d redemption orders for one transaction sent twice", len(orders))
			}
		})
	}
}
