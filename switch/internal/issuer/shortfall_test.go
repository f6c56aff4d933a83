package issuer_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
	"github.com/goldcard/goldcard/locks"
	"github.com/goldcard/goldcard/locks/etcdtest"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// TestShortfall is the balance-payment flow: the shortfall is redeemed from
// the fund inside the request and the debit approved.
func TestShortfall(t *testing.T) {
	t.Parallel()
	// The flows, not the deadline, are under test: a busy machine's slow
	// transaction or lock must not turn an approval into a 91.
	d := switchtest.Start(t, "--auth-timeout", "8s")
	bank := switchtest.ConnectBank(t, d.Bank)
	const (
		pan      = "6228480000000201"
		fundPoor = "6228480000000202"
		rich     = "6228480000000203"
	)
	d.AddCard(pan, 2000, 500000)
	d.AddCard(fundPoor, 0, 100)
	d.AddCard(rich, 0, 2000000)

	r := bank.Send("0200", bank.Fields(map[int]string{2: pan, 3: "010000", 4: "000000030000", 41: "ATM00001"}))
	switchtest.WantCode(t, r, "00")
	switchtest.WantCard(t, d, pan, r, 0, 0, 472000)
	c := d.Card(pan)
	if c.RedeemedToday != 28000 || c.RedeemableToday != 472000 {
		t.Fatalf("quota: %+v", c)
	}
	if b := switchtest.DE54(t, r); b["91/02"] != 472000 {
		t.Fatalf("DE54 redeemable: %v", b)
	}
	orders := d.CardOrders(pan)
	if len(orders) != 1 || orders[0].State != ledger.OrderConfirmed || orders[0].Amount != 28000 {
		t.Fatalf("orders: %+v", orders)
	}
	var o switchtest.Order
	if st := d.API("GET", "/v1/orders/"+orders[0].ID, nil, &o); st != 200 || o.PAN != "622848******0201" || o.Card != d.CardID(pan) {
		t.Fatalf("order: HTTP %d %+v", st, o)
	}

	// An authorisation takes the same path and holds the debit.
	r = bank.Send("0100", bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000001000"}))
	switchtest.WantCode(t, r, "00")
	switchtest.WantCard(t, d, pan, r, 1000, 0, 471000)

	switchtest.WantCode(t, bank.Send("0200", bank.Fields(map[int]string{2: fundPoor, 3: "000000", 4: "000000000200"})), "51")
	switchtest.WantCode(t, bank.Send("0200", bank.Fields(map[int]string{2: rich, 3: "000000", 4: "000001500000"})), "61")
	switchtest.WantCard(t, d, rich, nil, 0, 0, 2000000)

	// A reversal gives the debit back; the redeemed money stays in cash.
	orig := bank.Fields(map[int]string{2: rich, 3: "000000", 4: "000000050000", 41: "POS00001"})
	switchtest.WantCode(t, bank.Send("0200", orig), "00")
	switchtest.WantCard(t, d, rich, nil, 0, 0, 1950000)
	de90 := "0200" + orig[11] + orig[7] + fmt.Sprintf("%011s", orig[32]) + "00000000000"
	rev := bank.Fields(map[int]string{2: rich, 3: "000000", 4: "000000050000", 41: "POS00001", 90: de90})
	switchtest.WantCode(t, bank.Send("0420", rev), "00")
	switchtest.WantCard(t, d, rich, nil, 50000, 50000, 1950000)

	// A card that owes money redeems what it owes as well.
	const owing = "6228480000000204"
	d.AddCard(owing, 1000, 500000)
	switchtest.WantCode(t, bank.Send("0220", bank.Fields(map[int]string{2: owing, 3: "000000", 4: "000000001500"})), "00")
	switchtest.WantCard(t, d, owing, nil, -500, -500, 500000)
	r = bank.Send("0200", bank.Fields(map[int]string{2: owing, 3: "000000", 4: "000000002000"}))
	switchtest.WantCode(t, r, "00")
	switchtest.WantCard(t, d, owing, r, -2000+2500-500, 0, 497500)

	// Transfer out by hand: same order, quota and lock.
	var out switchtest.Order
	richOut := "/v1/cards/" + d.CardID(rich) + "/transfer-out"
	if st := d.API("POST", richOut, map[string]int64{"amount": 100000}, &out); st != http.StatusOK || out.State != ledger.OrderConfirmed {
		t.Fatalf("transfer out: HTTP %d %+v", st, out)
	}
	switchtest.WantCard(t, d, rich, nil, 150000, 150000, 1850000)
	var e map[string]string
	if st := d.API("POST", richOut, map[string]int64{"amount": 900000}, &e); st != http.StatusConflict {
		t.Fatalf("transfer out over the quota: HTTP %d %v", st, e)
	}
	if st := d.API("POST", richOut, map[string]any{"amount": -5}, &e); st != http.StatusBadRequest {
		t.Fatalf("negative transfer out: HTTP %d", st)
	}
	for _, name := range []string{"goldcard_redemptions_total", "goldcard_redemption_duration_seconds", "goldcard_lock_wait_seconds", "goldcard_quota_rejections_total"} {
		if !strings.Contains(d.Metrics(), name) {
			t.Errorf("metric %s missing", name)
		}
	}
	d.AssertNoSecrets(pan, fundPoor, rich)
}

// TestShortfallDeadline: a fund company slower than the bank's timeout gets
// a 91 in time; its late confirmation lands the money, debiting nothing.
func TestShortfallDeadline(t *testing.T) {
	fundURL, _ := switchtest.StartFundsim(t, 0, "--latency", "4s")
	d := switchtest.Start(t, "--fund-url", fundURL, "--auth-timeout", "3s")
	bank := switchtest.ConnectBank(t, d.Bank)
	const pan = "6228480000000301"
	d.AddCard(pan, 1000, 100000)
	for i := range 2 {
		start := time.Now()
		r := bank.Send("0200", bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000005000"}))
		switchtest.WantCode(t, r, "91")
		if took := time.Since(start); took < 2*time.Second {
			t.Fatalf("request %d answered after %s: the switch did not wait for the fund company", i, took)
		}
		// In time, by the switch's own clock: within the bank's 3 s, as
		// a deadline miss waiting for the fund (counted once the answer
		// is written).
		switchtest.WaitFor(t, "the answer to be counted", func() bool {
			return d.MetricValue(`goldcard_request_duration_seconds_count{bank="default",mti="0200"}`) == float64(i+1)
		})
		if n := d.MetricValue(`goldcard_request_duration_seconds_bucket{bank="default",mti="0200",le="3"}`); n != float64(i+1) {
			t.Fatalf("%v of %d answers within 3s", n, i+1)
		}
		if n := d.MetricValue(`goldcard_deadline_misses_total{bank="default",stage="fund"}`); n != float64(i+1) {
			t.Fatalf("%v deadline misses waiting for the fund, want %d", n, i+1)
		}
		if i == 0 {
			// Nothing debited; the shortfall is on its way from the fund.
			if c := d.Card(pan); c.Balance != 1000 || c.FundBalance != 100000-4000 {
				t.Fatalf("while pending: %+v", c)
			}
		}
	}
	switchtest.WaitFor(t, "the late confirmations to land", func() bool {
		c := d.Card(pan)
		return c.Balance == 1000+8000 && c.FundBalance == 92000
	})
	for _, o := range d.CardOrders(pan) {
		if o.State != ledger.OrderConfirmed {
			t.Fatalf("order %+v", o)
		}
	}
}

// TestLostRedemption: the fund company never receives the order; the
// reconciler finds it unknown and sends it again with the same id.
func TestLostRedemption(t *testing.T) {
	t.Parallel()
	port, err := locks.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	fundURL, sim := switchtest.StartFundsim(t, port, "--latency", "10ms", "--lose-rate", "1")
	// The order must reach the fund company: on a busy machine the default
	// deadline could pass waiting for the card's lock, before any order.
	d := switchtest.Start(t, "--fund-url", fundURL, "--auth-timeout", "8s")
	bank := switchtest.ConnectBank(t, d.Bank)
	const pan = "6228480000000401"
	d.AddCard(pan, 0, 100000)
	switchtest.WantCode(t, bank.Send("0200", bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000002500"})), "91")
	// The fund company comes back without the lost request.
	_ = sim.Process.Kill()
	_ = sim.Wait()
	switchtest.StartFundsim(t, port, "--latency", "10ms")
	switchtest.WaitFor(t, "the lost order to be sent again and land", func() bool {
		c := d.Card(pan)
		return c.Balance == 2500 && c.FundBalance == 97500
	})
}

// TestTwoSwitchesOneCard races shortfall debits on one card from two
// switch processes sharing PostgreSQL and etcd.
func TestTwoSwitchesOneCard(t *testing.T) {
	t.Parallel()
	a := switchtest.Start(t)
	b := a.StartPeer()
	const pan = "6228480000000501"
	a.AddCard(pan, 1000, 20000)
	var approved atomic.Int64
	var codes sync.Map
	var wg sync.WaitGroup
	for _, d := range []*switchtest.Switch{a, b} {
		bank := switchtest.ConnectBank(t, d.Bank)
		for range 6 {
			wg.Go(func() {
				for range 5 {
					r := bank.Send("0200", bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000001000"}))
					n, _ := codes.LoadOrStore(r[39], new(atomic.Int64))
					n.(*atomic.Int64).Add(1)
					switch r[39] {
					case "00":
						approved.Add(1000)
					case "51", "91":
					default:
						t.Errorf("answer %v", r)
					}
				}
			})
		}
	}
	wg.Wait()
	codes.Range(func(k, v any) bool { t.Logf("%s: %d", k, v.(*atomic.Int64).Load()); return true })
	// A debit answered 91 may have left its order pending: its shares are
	// being redeemed until its follow-up lands them in the cash.
	switchtest.WaitFor(t, "every redemption order to be final", func() bool { return a.PendingOrders(pan) == 0 })
	c := a.Card(pan)
	if c.Balance < 0 || c.Available < 0 || c.FundBalance < 0 {
		t.Fatalf("card went negative: %+v", c)
	}
	// Every fen debited came from the cash or the fund, and nothing else.
	if c.Balance+c.FundBalance+approved.Load() != 21000 {
		t.Fatalf("cash %d + fund %d + debited %d != 21000", c.Balance, c.FundBalance, approved.Load())
	}
	if approved.Load() == 0 {
		t.Fatal("nothing was approved")
	}
}

// TestKilledLockHolder: a switch killed while holding a card's lock blocks
// the card for no longer than its lease.
func TestKilledLockHolder(t *testing.T) {
	cluster := etcdtest.New(t, 1)
	etcd := cluster.Endpoints()[0]
	a := switchtest.On(t, ledgertest.NewDatabase(t), etcd)
	a.Start("--etcd", etcd, "--lock-ttl", "2s", "--fund-latency", "30s", "--auth-timeout", "40s")
	b := a.StartPeer("--lock-ttl", "2s")
	const pan = "6228480000000601"
	a.AddCard(pan, 0, 100000)
	bankA := switchtest.ConnectBank(t, a.Bank)
	go func() { _, _ = bankA.Conn.Send(switchtest.MustMessage(t, bankA, pan, "000000001000")) }()
	switchtest.WaitFor(t, "a to hold the card's lock with an order out", func() bool { return len(a.CardOrders(pan)) == 1 })
	_ = a.Cmd.Process.Signal(syscall.SIGKILL)
	<-a.Done
	// A faster fund company, through the config center.
	cl := cluster.Client()
	if _, err := cl.Put(context.Background(), config.ConfigKey("/goldcard/", "fund"), `{"provider":"simulator","simulator_latency":"50ms"}`); err != nil {
		t.Fatal(err)
	}
	switchtest.WaitFor(t, "b to take the new fund config", func() bool { return strings.Contains(b.Logs(), `"msg":"fund company changed"`) })

	// b waited for the card's lock no longer than the dead holder's lease
	// (2 s) and etcd's hand-over allow, by its own count.
	bankB := switchtest.ConnectBank(t, b.Bank)
	r := bankB.Send("0200", bankB.Fields(map[int]string{2: pan, 3: "000000", 4: "000000002000"}))
	switchtest.WantCode(t, r, "00")
	if within, all := b.MetricValue(`goldcard_lock_wait_seconds_bucket{le="5"}`), b.MetricValue("goldcard_lock_wait_seconds_count"); all < 1 || within != all {
		t.Fatalf("%v of b's %v waits for the card's lock within 5s; the lease is 2s", within, all)
	}
	// a's order is settled by b's reconciler.
	switchtest.WaitFor(t, "the dead switch's order to be settled", func() bool { return b.PendingOrders(pan) == 0 })
}

// TestEtcdDown: without etcd, shortfall debits answer 91 at once and
// fast-path debits carry on.
func TestEtcdDown(t *testing.T) {
	t.Parallel()
	cluster := etcdtest.New(t, 1)
	etcd := cluster.Endpoints()[0]
	d := switchtest.On(t, ledgertest.NewDatabase(t), etcd)
	d.Start("--etcd", etcd)
	bank := switchtest.ConnectBank(t, d.Bank)
	const pan = "6228480000000701"
	d.AddCard(pan, 5000, 100000)
	cluster.Stop(0)
	switchtest.WaitFor(t, "the switch to see etcd down", func() bool { return d.MetricValue("goldcard_etcd_up") == 0 })
	switchtest.WantCode(t, bank.Send("0200", bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000009000"})), "91")
	// Refused at once, not after waiting out the deadline.
	switchtest.WaitFor(t, "the answer to be counted", func() bool {
		return d.MetricValue(`goldcard_request_duration_seconds_count{bank="default",mti="0200"}`) == 1
	})
	if n := d.MetricValue(`goldcard_deadline_misses_total{bank="default",stage="fund"}`) + d.MetricValue(`goldcard_deadline_misses_total{bank="default",stage="ledger"}`); n != 0 {
		t.Fatalf("the shortfall with etcd down waited for its deadline (%v misses)", n)
	}
	switchtest.WantCode(t, bank.Send("0200", bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000001000"})), "00")
	switchtest.WantCard(t, d, pan, nil, 4000, 4000, 100000)
}
