package link_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// TestConcurrentLinks races many requests over several links, with the
// same request sent on two links at once, then shuts down.
func TestConcurrentLinks(t *testing.T) {
	t.Parallel()
	srv, l := switchtest.StartServer(t)
	ctx := context.Background()
	const cards = 10
	for i := range cards {
		if _, err := l.CreateCard(ctx, ledger.NewCard{PAN: fmt.Sprintf("62284800000001%02d", i), Currency: "156", Balance: 100000}); err != nil {
			t.Fatal(err)
		}
	}
	banks := make([]*switchtest.Bank, 4)
	for i := range banks {
		banks[i] = switchtest.ConnectBank(t, srv.BankAddr("default").String())
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	approved := map[string]int64{} // PAN -> approved debits
	for w := range 40 {
		wg.Go(func() {
			b := banks[w%len(banks)]
			pan := fmt.Sprintf("62284800000001%02d", w%cards)
			for range 10 {
				r := b.Send("0200", b.Fields(map[int]string{2: pan, 3: "000000", 4: "000000000100"}))
				if r[39] != "00" {
					t.Errorf("debit: %v", r)
					return
				}
				mu.Lock()
				approved[pan] += 100
				mu.Unlock()
			}
		})
	}
	// One request sent on two links at once is posted once, and both
	// copies are answered with the same bytes.
	dup := banks[0].Fields(map[int]string{2: "6228480000000100", 3: "000000", 4: "000000000777"})
	resps := make([][]byte, 2)
	for i := range 2 {
		wg.Go(func() {
			m, _ := client.NewMessage(banks[i].Dialect, "0200", dup)
			r, err := banks[i+1].Conn.Send(m)
			if err != nil {
				t.Error(err)
				return
			}
			resps[i], _ = r.Pack()
		})
	}
	wg.Wait()
	if !bytes.Equal(resps[0], resps[1]) {
		t.Fatalf("the two copies were answered differently:\n%s\n%s", resps[0], resps[1])
	}
	for pan, debited := range approved {
		c, err := l.Card(ctx, pan, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		want := 100000 - debited
		if pan == "6228480000000100" {
			want -= 777
		}
		if c.Balance() != want {
			t.Errorf("%s: balance %d, want %d", pan, c.Balance(), want)
		}
	}
}
