package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/kek"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// TestRotationUnderLoad rotates the data key while two switches approve
// purchases: both move to the new key at once, earlier rows are sealed
// again under it behind the traffic, no approval is lost or doubled, every
// row still opens, and a repeat of a request answered before the rotation
// gets the same bytes.
func TestRotationUnderLoad(t *testing.T) {
	t.Parallel()
	d := switchtest.Start(t)
	peer := d.StartPeer()
	const cards = 8
	pans := make([]string, cards)
	for i := range pans {
		pans[i] = fmt.Sprintf("62284800000072%02d", i)
		d.AddCard(pans[i], 1_000_000, 0)
	}
	raw := switchtest.DialRaw(t, d.Bank)
	bank := switchtest.ConnectBank(t, d.Bank)
	early, err := client.NewMessage(bank.Dialect, "0200", bank.Fields(map[int]string{2: pans[0], 3: "000000", 4: "000000000100"}))
	if err != nil {
		t.Fatal(err)
	}
	earlyBody, _ := early.Pack()
	earlyResp := raw.RoundTrip(t, earlyBody)

	var (
		approved atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
		failures = make(chan error, 4)
	)
	for _, sw := range []*switchtest.Switch{d, peer} {
		b := switchtest.ConnectBank(t, sw.Bank)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				m, err := client.NewMessage(b.Dialect, "0200", b.Fields(map[int]string{2: pans[i%cards], 3: "000000", 4: "000000000100"}))
				if err == nil {
					var resp interface{ GetString(int) (string, error) }
					if resp, err = b.Conn.Send(m); err == nil {
						if code, _ := resp.GetString(39); code != "00" {
							err = fmt.Errorf("DE39 %s", code)
						}
					}
				}
				if err != nil {
					failures <- err
					return
				}
				approved.Add(1)
			}
		}()
	}
	switchtest.WaitFor(t, "traffic on both switches", func() bool { return approved.Load() > 100 })
	cmd := exec.Command(switchtest.Binary(t), "keys", "rotate", "--admin", d.Admin, "--json")
	cmd.Env = append(os.Environ(), "GOLDCARD_OPERATOR=li.wei")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("keys rotate: %v\n%s", err, out)
	}
	var rotated struct {
		Key      int32            `json:"key"`
		Switches []client.Applied `json:"switches"`
	}
	if err := json.Unmarshal(out, &rotated); err != nil || rotated.Key != 3 || len(rotated.Switches) != 2 {
		t.Fatalf("keys rotate: %s (%v); want key 3 followed by both switches", out, err)
	}
	for _, a := range rotated.Switches {
		if a.State != "applied" {
			t.Fatalf("switch %s: %s %s", a.ID, a.State, a.Error)
		}
	}
	at := approved.Load()
	switchtest.WaitFor(t, "every earlier row sealed under key 3", func() bool {
		out, err := switchtest.CLI(t, "", "keys", "status", "--admin", d.Admin, "--json")
		var st struct {
			Keys []ledger.DataKey `json:"keys"`
		}
		if err != nil || json.Unmarshal([]byte(out), &st) != nil {
			return false
		}
		for _, k := range st.Keys {
			if k.ID == 3 && k.Active && k.ResealedAt != nil {
				return true
			}
		}
		return false
	})
	switchtest.WaitFor(t, "traffic after the rotation", func() bool { return approved.Load() > at+100 })
	stop.Store(true)
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Fatalf("a purchase during the rotation: %v", err)
	}
	if again := raw.RoundTrip(t, earlyBody); !bytes.Equal(again, earlyResp) {
		t.Fatalf("a repeat after the rotation differs:\n%q\n%q", earlyResp, again)
	}

	ctx := context.Background()
	pool, err := pgxpool.New(ctx, d.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	keys, err := kek.Parse([]byte(switchtest.TestKEK))
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(ctx, pool, keys)
	if err != nil {
		t.Fatal(err)
	}
	n, requests, err := l.CheckSealed(ctx, true)
	if err != nil || n != cards {
		t.Fatalf("sealed: %d cards, %d requests: %v", n, requests, err)
	}
	want := approved.Load() + 1 // and the early one
	var posted, spent int64
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM requests WHERE response_code = '00' AND mti = '0200'),
			(SELECT sum(1000000 - balance) FROM accounts WHERE kind = 'cash' AND card_id IS NOT NULL)`).Scan(&posted, &spent); err != nil {
		t.Fatal(err)
	}
	if posted != want || spent != 100*want || int64(requests) < want {
		t.Fatalf("%d approvals told, %d in the ledger, %d spent; want %d and %d", want, posted, spent, want, 100*want)
	}
	if !strings.Contains(d.Logs()+peer.Logs(), `"every card and request is sealed under the data key in use","key":3`) {
		t.Fatal("no switch said the rows were sealed again")
	}
}
