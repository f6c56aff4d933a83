package top_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
	"github.com/goldcard/goldcard/switch/internal/tool/top"
)

// TestTopThreeInstances: three switches on one database and etcd, each
// sent a steady load of known rate and approval mix; goldcard top --once
// over all three reports those rates within 5%.
func TestTopThreeInstances(t *testing.T) {
	d1 := switchtest.Start(t, "--db-pool", "8")
	ds := []*switchtest.Switch{d1, d1.StartPeer("--db-pool", "8"), d1.StartPeer("--db-pool", "8")}
	// Spread over cards enough for each card's requests to be decided one
	// after another at the load's rate on a busy machine.
	var approved []string
	for i := range 12 {
		pan := fmt.Sprintf("62284800000003%02d", i)
		approved = append(approved, pan)
		d1.AddCard(pan, 1_000_000_00, 0)
	}

	// Each switch gets one request every 25 ms (40/s): three debits of
	// 0.01 from cards with money, then one for a card never issued (14).
	const perSwitch = 40.0
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var sent, failed atomic.Int64
	// When each request to each switch was sent and answered, to bound
	// what that switch counted in the window each of top's rates covers:
	// at least those sent and answered in it, at most those sent before
	// its end and answered after its start.
	var mu sync.Mutex
	type exchange struct{ sent, answered time.Time }
	answered := make([][]exchange, len(ds))
	for i, d := range ds {
		b := switchtest.ConnectBank(t, d.Bank)
		wg.Go(func() {
			// Paced on a fixed schedule: a late send is made up at once,
			// so the count over any second stays at the rate.
			start, every := time.Now(), time.Duration(float64(time.Second)/perSwitch)
			for n := 0; ; n++ {
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(start.Add(time.Duration(n) * every))):
				}
				pan := approved[n%len(approved)]
				if n%4 == 3 {
					pan = "6228480000009999"
				}
				m, err := client.NewMessage(b.Dialect, "0200", b.Fields(map[int]string{2: pan, 3: "000000", 4: "000000000001"}))
				if err != nil {
					failed.Add(1)
					continue
				}
				wg.Go(func() {
					at := time.Now()
					if _, err := b.Conn.Send(m); err != nil {
						failed.Add(1)
					}
					mu.Lock()
					answered[i] = append(answered[i], exchange{at, time.Now()})
					mu.Unlock()
					sent.Add(1)
				})
			}
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	time.Sleep(1500 * time.Millisecond)

	admins := ds[0].Admin + "," + ds[1].Admin + "," + ds[2].Admin
	out, stderr, err := runTopCLI(t, "--addr", admins, "--once", "--json", "--interval", "3s")
	if err != nil {
		t.Fatalf("top --once --json: %v\n%s%s", err, out, stderr)
	}
	var v top.View
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("top --json printed %q: %v", out, err)
	}
	if len(v.Banks) != 1 || v.Banks[0].Bank != "default" {
		t.Fatalf("banks: %+v", v.Banks)
	}
	b := v.Banks[0]
	// What each switch can have counted between its two scrapes, each read
	// at some moment between the scrape's sending and its answer: at least
	// the requests sent after the first scrape's answer and answered
	// before the second was sent, at most those sent before the second's
	// answer and answered after the first was sent. As rates over top's
	// window, give or take one request at each edge.
	lo, hi := make([]float64, len(ds)), make([]float64, len(ds))
	var wantLo, wantHi float64
	mu.Lock()
	for i, inst := range v.Instances {
		if inst.Since == nil || inst.SinceAsked == nil {
			t.Fatalf("instance %d has no rate window: %+v", i, inst)
		}
		var in, across int
		for _, x := range answered[i] {
			if !x.sent.After(inst.At) && x.answered.After(*inst.SinceAsked) {
				across++
			}
			if x.sent.After(*inst.Since) && x.answered.Before(inst.AtAsked) {
				in++
			}
		}
		secs := inst.At.Sub(*inst.Since).Seconds()
		lo[i], hi[i] = float64(in-1)/secs, float64(across+1)/secs
		wantLo, wantHi = wantLo+lo[i], wantHi+hi[i]
	}
	mu.Unlock()
	if wantHi < perSwitch || b.Requests < wantLo || b.Requests > wantHi {
		t.Errorf("requests/s = %.1f, the load's answers bound it to %.1f..%.1f/s", b.Requests, wantLo, wantHi)
	}
	if b.Approval == nil || math.Abs(*b.Approval-0.75) > 0.05 {
		t.Errorf("approval rate = %v, want 0.75", b.Approval)
	}
	if len(b.Codes) != 2 || b.Codes[0].Code != "00" || b.Codes[1].Code != "14" {
		t.Errorf("code mix = %+v, want 00 then 14", b.Codes)
	}
	if b.P50 == nil || b.P99 == nil || *b.P50 <= 0 || *b.P99 < *b.P50 || *b.P99 > 3 {
		t.Errorf("latency p50 %v p99 %v", b.P50, b.P99)
	}
	if b.LinksUp != len(ds) || b.DeadlineMisses != 0 {
		t.Errorf("links up %d (want %d), deadline misses %.2f/s", b.LinksUp, len(ds), b.DeadlineMisses)
	}
	leaders := 0
	for i, inst := range v.Instances {
		if !inst.Up || inst.Requests == nil || *inst.Requests < lo[i] || *inst.Requests > hi[i] {
			t.Errorf("instance %d: %+v (requests/s %.2f, the load's answers bound it to %.1f..%.1f/s; error %q)", i, inst, deref(inst.Requests), lo[i], hi[i], inst.Error)
		}
		if inst.EtcdUp == nil || !*inst.EtcdUp || inst.PostgresUp == nil || !*inst.PostgresUp || inst.Version == "" {
			t.Errorf("instance %d health: %+v", i, inst)
		}
		if inst.TimerLeader {
			leaders++
		}
		if inst.ConfigRevision <= 0 || inst.ConfigRevision != v.Instances[0].ConfigRevision {
			t.Errorf("instance %d runs config revision %d, instance 0 %d", i, inst.ConfigRevision, v.Instances[0].ConfigRevision)
		}
	}
	if leaders != 1 {
		t.Errorf("%d instances lead the timer, want 1", leaders)
	}

	// The plain frame fits 80x24 and says the same.
	text, stderr, err := runTopCLI(t, "--addr", admins, "--once", "--interval", "1s")
	if err != nil {
		t.Fatalf("top --once: %v\n%s%s", err, text, stderr)
	}
	top.CheckFrame(t, text, 80, 24)
	for _, s := range []string{"3/3 instances up", "default", "00 ", "14 ", ds[2].Admin} {
		if !strings.Contains(text, s) {
			t.Errorf("frame lacks %q:\n%s", s, text)
		}
	}

	// An instance that cannot be scraped is shown and fails --once.
	text, stderr, err = runTopCLI(t, "--addr", admins+","+switchtest.FreeAddr(t), "--once", "--interval", "200ms")
	if err == nil || !strings.Contains(text, "3/4 instances up") || !strings.Contains(text, "DOWN") ||
		!strings.Contains(stderr, "1 of 4 instances could not be scraped") {
		t.Errorf("with one instance down: err %v\n%s%s", err, text, stderr)
	}
	if failed.Load() > 0 {
		t.Errorf("%d of %d load requests failed", failed.Load(), sent.Load())
	}
}

func deref(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

func runTopCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(switchtest.Binary(t), append([]string{"top"}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}
