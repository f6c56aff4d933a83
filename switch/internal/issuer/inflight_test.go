package issuer_test

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
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// sent is a request sent without waiting for its answer.
type sent struct {
	resp *iso8583.Message
	err  error
}

// sendAsync sends mti with fields f on b and returns where its answer
// will arrive.
func sendAsync(t *testing.T, b *switchtest.Bank, mti string, f map[int]string) <-chan sent {
	t.Helper()
	m, err := client.NewMessage(b.Dialect, mti, f)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan sent, 1)
	go func() {
		r, err := b.Conn.Send(m)
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
func pendingOrder(t *testing.T, d *switchtest.Switch, pan string) {
	t.Helper()
	switchtest.WaitFor(t, "the shortfall's order to be out", func() bool { return d.PendingOrders(pan) > 0 })
}

// TestRepeatWhileDeciding: a repeat that arrives, on another link or
// another switch, while its original waits on the fund company gets the
// original's answer and nothing of its own; the card's shares and quota
// are used once.
func TestRepeatWhileDeciding(t *testing.T) {
	t.Parallel()
	// The original must be confirmed within its deadline, on a busy
	// machine too: what a copy gets when it is not is another test's.
	a := switchtest.Start(t, "--fund-latency", "1500ms", "--auth-timeout", "8s")
	b := a.StartPeer("--auth-timeout", "8s")
	// Each card's fund or quota covers the shortfall once: a copy decided
	// on its own would find them gone and be declined.
	for i, tc := range []struct {
		name, mti, repeat string
		copyTo            *switchtest.Switch
		fund, amount      int64
	}{
		{"0200 and 0201 on another link, the fund covering it once", "0200", "0201", a, 5000, 5000},
		{"0100 and 0101 on another link, the quota covering it once", "0100", "0101", a, 2000000, 1000000},
		{"0200 and 0201 on another switch", "0200", "0201", b, 5000, 5000},
		{"0200 sent twice on another switch", "0200", "0200", b, 5000, 5000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pan := fmt.Sprintf("62284800000091%02d", i)
			a.AddCard(pan, 0, tc.fund)
			first, second := switchtest.ConnectBank(t, a.Bank), switchtest.ConnectBank(t, tc.copyTo.Bank)
			f := first.Fields(map[int]string{2: pan, 3: "000000", 4: fmt.Sprintf("%012d", tc.amount)})
			orig := sendAsync(t, first, tc.mti, f)
			pendingOrder(t, a, pan)
			copied := sendAsync(t, second, tc.repeat, f)
			o, c := packed(t, <-orig), packed(t, <-copied)
			if !bytes.Equal(o, c) {
				t.Fatalf("the copy got an answer of its own:\noriginal %s\ncopy     %s", o, c)
			}
			switchtest.WantCode(t, switchtest.FieldsOf(t, (<-sendAsync(t, first, tc.repeat, f)).resp), "00")
			card := a.Card(pan)
			if card.FundBalance != tc.fund-tc.amount || card.RedeemedToday != tc.amount {
				t.Fatalf("card after one debit covered from the fund: %+v", card)
			}
			if n := len(a.CardOrders(pan)); n != 1 {
				t.Fatalf("%d redemption orders for one debit", n)
			}
		})
	}
	if !bytes.Contains([]byte(b.Logs()), []byte(`"joined":true`)) {
		t.Error("no copy was logged as having waited for its original")
	}
}

// TestCopyOfAReleasedRequest: a copy that arrives on the same switch while
// its original waits on the fund company waits its turn behind it; when
// the fund company does not confirm in time and the original is answered
// 91, the copy gets that same answer, and is not decided afresh: one
// order, one answer.
func TestCopyOfAReleasedRequest(t *testing.T) {
	t.Parallel()
	// The fund company never answers in time; the deadline leaves the
	// original room to be stored and released on a busy machine.
	a := switchtest.Start(t, "--fund-latency", "60s", "--auth-timeout", "6s")
	const pan = "6228480000009201"
	a.AddCard(pan, 0, 10000)
	first, second := switchtest.ConnectBank(t, a.Bank), switchtest.ConnectBank(t, a.Bank)
	f := first.Fields(map[int]string{2: pan, 3: "000000", 4: "000000005000"})
	orig := sendAsync(t, first, "0200", f)
	pendingOrder(t, a, pan)
	copied := sendAsync(t, second, "0201", f)
	o, c := <-orig, <-copied
	switchtest.WantCode(t, switchtest.FieldsOf(t, o.resp), "91")
	// The copy arrived after the original's order was placed, so its own
	// time runs out after the original's: it gets the original's 91.
	if c.err != nil {
		t.Fatalf("the copy got no answer: %v", c.err)
	}
	if !bytes.Equal(packed(t, o), packed(t, c)) {
		t.Errorf("the copy got an answer of its own:\noriginal %s\ncopy     %s", packed(t, o), packed(t, c))
	}
	if n := len(a.CardOrders(pan)); n != 1 {
		t.Errorf("%d redemption orders for one debit and its copy", n)
	}
}

// TestRepeatAfterDeciderDied: a switch killed while its request waits on
// the fund company leaves nothing that blocks the request's later
// repeats: once the request's time to answer has passed, a repeat on
// another switch decides it afresh, and no money is lost or spent twice.
func TestRepeatAfterDeciderDied(t *testing.T) {
	cluster := etcdtest.New(t, 1)
	etcd := cluster.Endpoints()[0]
	a := switchtest.On(t, ledgertest.NewDatabase(t), etcd)
	a.Start("--etcd", etcd, "--lock-ttl", "1s", "--fund-latency", "1m")
	b := a.StartPeer("--lock-ttl", "1s")
	const pan = "6228480000009201"
	a.AddCard(pan, 0, 10000)
	bankA := switchtest.ConnectBank(t, a.Bank)
	f := bankA.Fields(map[int]string{2: pan, 3: "000000", 4: "000000005000"})
	lost := sendAsync(t, bankA, "0200", f)
	pendingOrder(t, a, pan)
	_ = a.Cmd.Process.Signal(syscall.SIGKILL)
	<-a.Done
	if s := <-lost; s.err == nil {
		t.Fatalf("the killed switch answered: %v", switchtest.FieldsOf(t, s.resp))
	}
	cl := cluster.Client()
	if _, err := cl.Put(context.Background(), config.ConfigKey("/goldcard/", "fund"), `{"provider":"simulator","simulator_latency":"20ms"}`); err != nil {
		t.Fatal(err)
	}
	switchtest.WaitFor(t, "b to take the faster fund company", func() bool { return bytes.Contains([]byte(b.Logs()), []byte(`"msg":"fund company changed"`)) })
	switchtest.WaitFor(t, "the dead switch's request to run out of time", func() bool { return requestExpired(t, a.DB) })

	bankB := switchtest.ConnectBank(t, b.Bank)
	r := bankB.Send("0201", f)
	switchtest.WantCode(t, r, "00")
	switchtest.WantCode(t, bankB.Send("0201", f), "00")
	switchtest.WaitFor(t, "the dead switch's order to be settled", func() bool { return b.PendingOrders(pan) == 0 })
	c := b.Card(pan)
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
	conn := switchtest.ConnectDB(t, dsn)
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
	srv, l := switchtest.StartServer(t, "banks/stamps", mustJSON(t, withDE7))
	ctx := context.Background()
	const pan = "6228480000009301"
	if _, err := l.CreateCard(ctx, ledger.NewCard{PAN: pan, Currency: "156", Balance: 100000}); err != nil {
		t.Fatal(err)
	}
	bank := switchtest.ConnectBank(t, srv.BankAddr("default").String())
	f := bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000001000", 7: "1201080000"})
	first := packed(t, <-sendAsync(t, bank, "0200", f))
	f[7] = "1201080007"
	again := packed(t, <-sendAsync(t, bank, "0201", f))
	if !bytes.Equal(first, again) {
		t.Fatalf("the repeat with a new DE7 was answered afresh:\n%s\n%s", first, again)
	}
	f[7] = "1201080009"
	switchtest.WantCode(t, bank.Send("0200", f), "00")
	if c, _ := l.Card(ctx, pan, time.Time{}); c.Balance() != 99000 {
		t.Fatalf("balance %d after one debit of 10.00 sent three times", c.Balance())
	}

	// The bank whose key names DE7: another DE7 is another transaction.
	stamps := switchtest.ConnectBank(t, srv.BankAddr("stamps").String())
	g := stamps.Fields(map[int]string{2: pan, 3: "000000", 4: "000000001000", 7: "1201080000", 32: "5555"})
	switchtest.WantCode(t, stamps.Send("0200", g), "00")
	g[7] = "1201080007"
	switchtest.WantCode(t, stamps.Send("0201", g), "00")
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
