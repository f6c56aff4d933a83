package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
	"github.com/goldcard/goldcard/locks/etcdtest"
	"github.com/goldcard/goldcard/switch/internal/client"
)

// sent is a request sent without waiting for its answer.
type sent struct {
	resp *iso8583.Message
	err  error
}

// sendAsync sends mti with fields f on b and returns where its answer
// will arrive.
func sendAsync(t *testing.T, b *bankSim, mti string, f map[int]string) <-chan sent {
	t.Helper()
	m, err := client.NewMessage(b.d, mti, f)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan sent, 1)
	go func() {
		r, err := b.conn.Send(m)
		ch <- sent{r, err}
	}()
	return ch
}

func packed(t *testing.T, s sent) []byte {
	t.Helper()
	if s.err != nil {
		t.Fatal(s.err)
	}
	b, err := s.resp.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pendingOrder waits until the card has a pending redemption order: its
// request is being decided.
func pendingOrder(t *testing.T, d *instance, pan string) {
	t.Helper()
	waitFor(t, "the shortfall's order to be out", func() bool { return d.pendingOrders(pan) > 0 })
}

// TestRepeatWhileDeciding: a repeat that arrives, on another link or
// another switch, while its original waits on the fund company gets the
// original's answer and nothing of its own; the card's shares and quota
// are used once.
func TestRepeatWhileDeciding(t *testing.T) {
	t.Parallel()
	a := startDaemon(t, "--fund-latency", "1500ms")
	b := a.startPeer()
	// Each card's fund or quota covers the shortfall once: a copy decided
	// on its own would find them gone and be declined.
	for i, tc := range []struct {
		name, mti, repeat string
		copyTo            *instance
		fund, amount      int64
	}{
		{"0200 and 0201 on another link, the fund covering it once", "0200", "0201", a, 5000, 5000},
		{"0100 and 0101 on another link, the quota covering it once", "0100", "0101", a, 2000000, 1000000},
		{"0200 and 0201 on another switch", "0200", "0201", b, 5000, 5000},
		{"0200 sent twice on another switch", "0200", "0200", b, 5000, 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pan := fmt.Sprintf("62284800000091%02d", i)
			a.addCard(pan, 0, tc.fund)
			first, second := connectBank(t, a.bank), connectBank(t, tc.copyTo.bank)
			f := first.fields(map[int]string{2: pan, 3: "000000", 4: fmt.Sprintf("%012d", tc.amount)})
			orig := sendAsync(t, first, tc.mti, f)
			pendingOrder(t, a, pan)
			copied := sendAsync(t, second, tc.repeat, f)
			o, c := packed(t, <-orig), packed(t, <-copied)
			if !bytes.Equal(o, c) {
				t.Fatalf("the copy got an answer of its own:\noriginal %s\ncopy     %s", o, c)
			}
			wantCode(t, fieldsOf(t, (<-sendAsync(t, first, tc.repeat, f)).resp), "00")
			card := a.card(pan)
			if card.FundBalance != tc.fund-tc.amount || card.RedeemedToday != tc.amount {
				t.Fatalf("card after one debit covered from the fund: %+v", card)
			}
			if n := len(a.cardOrders(pan)); n != 1 {
				t.Fatalf("%d redemption orders for one debit", n)
			}
		})
	}
	if !bytes.Contains([]byte(b.Logs()), []byte(`"joined":true`)) {
		t.Error("no copy was logged as having waited for its original")
	}
}

// TestRepeatAfterDeciderDied: a switch killed while its request waits on
// the fund company leaves nothing that blocks the request's later
// repeats: once the request's time to answer has passed, a repeat on
// another switch decides it afresh, and no money is lost or spent twice.
func TestRepeatAfterDeciderDied(t *testing.T) {
	cluster := etcdtest.New(t, 1)
	etcd := cluster.Endpoints()[0]
	a := &instance{t: t, db: ledgertest.NewDatabase(t), done: make(chan error, 1), etcd: etcd}
	a.start("--etcd", etcd, "--lock-ttl", "1s", "--fund-latency", "1m")
	b := a.startPeer("--lock-ttl", "1s")
	const pan = "6228480000009201"
	a.addCard(pan, 0, 10000)
	bankA := connectBank(t, a.bank)
	f := bankA.fields(map[int]string{2: pan, 3: "000000", 4: "000000005000"})
	lost := sendAsync(t, bankA, "0200", f)
	pendingOrder(t, a, pan)
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
	if s := <-lost; s.err == nil {
		t.Fatalf("the killed switch answered: %v", fieldsOf(t, s.resp))
	}
	cl := cluster.Client()
	if _, err := cl.Put(context.Background(), config.ConfigKey("/goldcard/", "fund"), `{"provider":"simulator","simulator_latency":"20ms"}`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to take the faster fund company", func() bool { return bytes.Contains([]byte(b.Logs()), []byte(`"msg":"fund company changed"`)) })
	waitFor(t, "the dead switch's request to run out of time", func() bool { return requestExpired(t, a.db) })

	bankB := connectBank(t, b.bank)
	r := bankB.send("0201", f)
	wantCode(t, r, "00")
	wantCode(t, bankB.send("0201", f), "00")
	waitFor(t, "the dead switch's order to be settled", func() bool { return b.pendingOrders(pan) == 0 })
	c := b.card(pan)
	if c.Balance+c.FundBalance != 10000-5000 {
		t.Fatalf("card after one approved debit of 50.00 on 100.00: %+v", c)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// requestExpired reports whether the database holds a request being
// decided whose time to answer has passed.
func requestExpired(t *testing.T, dsn string) bool {
	t.Helper()
	ctx := context.Background()
	conn := connectDB(t, dsn)
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM requests WHERE state = 'deciding' AND respond_by < clock_timestamp()`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// TestRepeatWithNewDE7: many acquirers stamp DE7 afresh on every
// transmission. A repeat is matched by what identifies the transaction,
// and never posted twice; a bank whose key names DE7 tells them apart.
func TestRepeatWithNewDE7(t *testing.T) {
	t.Parallel()
	withDE7 := config.DefaultBank("127.0.0.1:0")
	withDE7.Code, withDE7.Acquirers = "stamps", []string{"5555"}
	withDE7.TxnKey = []string{"acquirer", "stan", "transmitted", "terminal", "rrn"}
	srv, l := startServer(t, "banks/stamps", mustJSON(t, withDE7))
	ctx := context.Background()
	const pan = "6228480000009301"
	if _, err := l.CreateCard(ctx, ledger.NewCard{PAN: pan, Currency: "156", Balance: 100000}); err != nil {
		t.Fatal(err)
	}
	bank := connectBank(t, srv.BankAddr("default").String())
	f := bank.fields(map[int]string{2: pan, 3: "000000", 4: "000000001000", 7: "1201080000"})
	first := packed(t, <-sendAsync(t, bank, "0200", f))
	f[7] = "1201080007"
	again := packed(t, <-sendAsync(t, bank, "0201", f))
	if !bytes.Equal(first, again) {
		t.Fatalf("the repeat with a new DE7 was answered afresh:\n%s\n%s", first, again)
	}
	f[7] = "1201080009"
	wantCode(t, bank.send("0200", f), "00")
	if c, _ := l.Card(ctx, pan, time.Time{}); c.Balance() != 99000 {
		t.Fatalf("balance %d after one debit of 10.00 sent three times", c.Balance())
	}

	// The bank whose key names DE7: another DE7 is another transaction.
	stamps := connectBank(t, srv.BankAddr("stamps").String())
	g := stamps.fields(map[int]string{2: pan, 3: "000000", 4: "000000001000", 7: "1201080000", 32: "5555"})
	wantCode(t, stamps.send("0200", g), "00")
	g[7] = "1201080007"
	wantCode(t, stamps.send("0201", g), "00")
	if c, _ := l.Card(ctx, pan, time.Time{}); c.Balance() != 97000 {
		t.Fatalf("balance %d: the bank that names DE7 in its key had two transactions", c.Balance())
	}
}

// TestTxnKeyFieldsAgree: the config and the ledger name the same key
// fields and the same default.
func TestTxnKeyFieldsAgree(t *testing.T) {
	if !slices.Equal(config.TxnKeyFields, ledger.KeyFields) || !slices.Equal(config.DefaultTxnKey(), ledger.DefaultKeyFields) {
		t.Fatalf("config %v %v, ledger %v %v", config.TxnKeyFields, config.DefaultTxnKey(), ledger.KeyFields, ledger.DefaultKeyFields)
	}
}
