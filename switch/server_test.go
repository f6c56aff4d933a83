package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
	"github.com/goldcard/goldcard/switch/internal/client"
)

// startServer runs a switch in this process, for tests that need the race
// detector on the link code, with extra config keys.
func startServer(t *testing.T, kvs ...string) (*Server, *ledger.Ledger) {
	t.Helper()
	return startServerWith(t, ServerOptions{}, kvs...)
}

// startServerWith is startServer with options of o (a locker, an
// election); the config, pool, log and admin address are its own.
func startServerWith(t *testing.T, o ServerOptions, kvs ...string) (*Server, *ledger.Ledger) {
	t.Helper()
	l, pool := ledgertest.New(t)
	bank := config.DefaultBank("127.0.0.1:0")
	bank.MaxInFlight = 8
	bankJSON, _ := json.Marshal(bank)
	keys := map[string][]byte{"banks/default": bankJSON}
	for i := 0; i+1 < len(kvs); i += 2 {
		keys[kvs[i]] = []byte(kvs[i+1])
	}
	snap, err := config.Build(1, keys, builtinDialects())
	if err == nil {
		err = snap.Validate(nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	o.Config, o.Pool, o.Log, o.Admin = config.NewStore(snap), pool, log, "127.0.0.1:0"
	// No config center: the switch is known by its database alone.
	id, err := databaseIdentity(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	o.Identity = id.digest()
	srv := NewServer(context.Background(), o)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv, l
}

// TestConcurrentLinks races many requests over several links, with the
// same request sent on two links at once, then shuts down.
func TestConcurrentLinks(t *testing.T) {
	t.Parallel()
	srv, l := startServer(t)
	ctx := context.Background()
	const cards = 10
	for i := range cards {
		if _, err := l.CreateCard(ctx, ledger.NewCard{PAN: fmt.Sprintf("62284800000001%02d", i), Currency: "156", Balance: 100000}); err != nil {
			t.Fatal(err)
		}
	}
	banks := make([]*bankSim, 4)
	for i := range banks {
		banks[i] = connectBank(t, srv.BankAddr("default").String())
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	approved := map[string]int64{} // PAN -> approved debits
	for w := range 40 {
		wg.Go(func() {
			b := banks[w%len(banks)]
			pan := fmt.Sprintf("62284800000001%02d", w%cards)
			for range 10 {
				r := b.send("0200", b.fields(map[int]string{2: pan, 3: "000000", 4: "000000000100"}))
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
	dup := banks[0].fields(map[int]string{2: "6228480000000100", 3: "000000", 4: "000000000777"})
	resps := make([][]byte, 2)
	for i := range 2 {
		wg.Go(func() {
			m, _ := client.NewMessage(banks[i].d, "0200", dup)
			r, err := banks[i+1].conn.Send(m)
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

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}
