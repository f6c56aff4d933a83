package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger/ledgertest"
	"github.com/goldcard/goldcard/locks/etcdtest"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// TestSwitchesKilledUnderLoad: three switches on one database take debits
// (many covered from the fund) from banks on every switch, and two are
// killed with SIGKILL while requests are in flight. The banks repeat or
// reverse what got no answer on a switch still up, as acquirers do. In
// the end every card holds its opening money less exactly what the banks
// were told was approved, and the books balance (ledgertest audits them).
func TestSwitchesKilledUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of load and kills")
	}
	const (
		cards   = 12
		opening = 20000 + 60000 // cash + fund of each card
		workers = 9
	)
	cluster := etcdtest.New(t, 1)
	etcd := cluster.Endpoints()[0]
	db := ledgertest.NewDatabase(t)
	switches := make([]*switchtest.Switch, 3)
	for i := range switches {
		d := switchtest.On(t, db, etcd)
		d.Start("--etcd", etcd, "--lock-ttl", "1s", "--fund-latency", "40ms", "--instance-id", fmt.Sprintf("switch-%d", i))
		switches[i] = d
	}
	pan := func(i int) string { return fmt.Sprintf("62284800000097%02d", i) }
	for i := range cards {
		switches[0].AddCard(pan(i), 20000, 60000)
	}

	var (
		mu       sync.Mutex
		alive    = []bool{true, true, true}
		approved = map[string]int64{}
		lost     []map[int]string // requests that got no answer
	)
	liveSwitch := func(r *rand.Rand) *switchtest.Switch {
		mu.Lock()
		defer mu.Unlock()
		for {
			if i := r.IntN(len(switches)); alive[i] {
				return switches[i]
			}
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			connect := func() *switchtest.Bank {
				for {
					if b, err := dialSim(t, liveSwitch(r).Bank); err == nil {
						return b
					}
				}
			}
			bank := connect()
			for {
				select {
				case <-stop:
					return
				default:
				}
				card := pan(r.IntN(cards))
				f := bank.Fields(map[int]string{2: card, 3: "000000", 4: fmt.Sprintf("%012d", 500+r.IntN(6000)),
					12: fmt.Sprintf("%02d%02d%02d", r.IntN(24), r.IntN(60), r.IntN(60)), 41: fmt.Sprintf("ATM%05d", w)})
				m, err := client.NewMessage(bank.Dialect, "0200", f)
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := bank.Conn.Send(m)
				if err != nil {
					// No answer: the switch died, or will not say.
					mu.Lock()
					lost = append(lost, f)
					mu.Unlock()
					_ = bank.Conn.Close()
					bank = connect()
					continue
				}
				if code, _ := resp.GetString(39); code == "00" {
					amount, _ := strconv.ParseInt(f[4], 10, 64)
					mu.Lock()
					approved[card] += amount
					mu.Unlock()
				}
			}
		})
	}
	for _, victim := range []int{1, 2} {
		// Let the load run, then kill a switch with requests in flight.
		switchtest.WaitFor(t, "requests to flow", func() bool { return countRequests(t, db) > int64(60*victim) })
		mu.Lock()
		alive[victim] = false
		mu.Unlock()
		_ = switches[victim].Cmd.Process.Signal(syscall.SIGKILL)
		<-switches[victim].Done
	}
	switchtest.WaitFor(t, "requests to flow on the last switch", func() bool { return countRequests(t, db) > 300 })
	close(stop)
	wg.Wait()

	// The banks settle what got no answer on the switch still up: half
	// by a repeat (its answer is the original's), half by a reversal.
	survivor := switches[0]
	bank := switchtest.ConnectBank(t, survivor.Bank)
	settle := func(mti string, f map[int]string) string {
		for {
			m, err := client.NewMessage(bank.Dialect, mti, f)
			if err != nil {
				t.Fatal(err)
			}
			// A copy of a request its dead switch was still deciding gets
			// no answer until that request's time is up: ask again.
			resp, err := bank.Conn.Send(m)
			if err == nil {
				code, _ := resp.GetString(39)
				return code
			}
			_ = bank.Conn.Close()
			bank = switchtest.ConnectBank(t, survivor.Bank)
		}
	}
	for i, f := range lost {
		if i%2 == 0 {
			if settle("0201", f) == "00" {
				amount, _ := strconv.ParseInt(f[4], 10, 64)
				approved[f[2]] += amount
			}
			continue
		}
		if code := settle("0420", f); code != "00" {
			t.Errorf("reversal of a request without an answer: %s", code)
		}
	}
	all := make([]string, cards)
	for i := range all {
		all[i] = pan(i)
	}
	switchtest.WaitFor(t, "every redemption order to be final", func() bool { return survivor.PendingOrders(all...) == 0 })
	total := int64(0)
	for i := range cards {
		c := survivor.Card(pan(i))
		total += approved[pan(i)]
		if got := c.Balance + c.FundBalance; got != opening-approved[pan(i)] {
			t.Errorf("%s: cash %d + fund %d = %d, want %d less the %d approved", pan(i), c.Balance, c.FundBalance, got, opening, approved[pan(i)])
		}
	}
	t.Logf("%d requests without an answer, %d approved in all", len(lost), total)
	if len(lost) == 0 {
		t.Log("no request was in flight at a kill")
	}
}

// dialSim connects a bank to addr, reporting rather than failing when the
// switch there is going away.
func dialSim(t *testing.T, addr string) (*switchtest.Bank, error) {
	d, err := iso.Builtin(iso.DefaultDialect)
	if err != nil {
		return nil, err
	}
	h, _ := iso.HeaderByName(iso.HeaderBinary2)
	c, err := client.DialBank(context.Background(), addr, d, h)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = c.Close() })
	b := switchtest.NewBank(t, d, c, time.Now().UnixNano()%500000)
	return b, nil
}

// countRequests counts the requests the ledger holds.
func countRequests(t *testing.T, dsn string) int64 {
	t.Helper()
	conn := switchtest.ConnectDB(t, dsn)
	defer conn.Close(t.Context())
	var n int64
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM requests`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
