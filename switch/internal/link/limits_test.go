package link_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/internal/metric"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// TestLinkReadLimits: an idle link, a frame that never completes, a
// trickled frame and an oversized one each close only their own link,
// counted by limit; a link over its request rate gets 91s that post
// nothing, and its well-behaved neighbour is untouched.
func TestLinkReadLimits(t *testing.T) {
	t.Parallel()
	srv, l := switchtest.StartServer(t, "banks/default", `{"listen":"127.0.0.1:0","max_in_flight":8,
		"idle_timeout":"1500ms","frame_timeout":"300ms","max_request_rate":5,"rate_burst":3}`)
	addr := srv.BankAddr("default").String()
	admin := srv.AdminAddr().String()
	count := func(name string, labels map[string]string) float64 {
		return switchtest.Total(switchtest.Scrape(t, admin)[name], labels)
	}
	breaches := func(limit string) float64 {
		return count("goldcard_limit_breaches_total", map[string]string{"bank": "default", "limit": limit})
	}
	events := func(event string) float64 {
		return count("goldcard_connection_events_total", map[string]string{"bank": "default", "event": event})
	}
	for _, limit := range []string{metric.LimitIdle, metric.LimitSlowFrame, metric.LimitFrameSize, metric.LimitRate} {
		if breaches(limit) != 0 {
			t.Fatalf("%s breaches before any link", limit)
		}
	}

	const idle = 1500 * time.Millisecond
	t.Run("idle", func(t *testing.T) {
		start := time.Now() // the switch's idle clock starts after this
		raw := switchtest.DialRaw(t, addr)
		raw.ExpectClosed(t)
		if took := time.Since(start); took < idle {
			t.Fatalf("closed after %v, before the idle timeout", took)
		}
		switchtest.WaitFor(t, "closed_idle to be counted", func() bool { return events("closed_idle") == 1 && breaches(metric.LimitIdle) == 1 })
	})
	t.Run("echoes keep a link open", func(t *testing.T) {
		// A run proves it only if the test itself kept sending within the
		// idle timeout: one stalled by the machine for half of it is run
		// again.
		for attempt := 1; ; attempt++ {
			stalled, err := echoFor(t, addr, 2*idle, idle/2)
			if err == nil {
				return
			}
			if !stalled || attempt == 5 {
				t.Fatal(err)
			}
			t.Logf("attempt %d: the test stalled between echoes (%v); again", attempt, err)
		}
	})
	t.Run("header and nothing", func(t *testing.T) {
		idleBefore := events("closed_idle")
		raw := switchtest.DialRaw(t, addr)
		if _, err := raw.Conn.Write([]byte{0x01}); err != nil { // half a header
			t.Fatal(err)
		}
		raw.ExpectClosed(t)
		// By the frame timeout from its first byte, not the idle timeout.
		switchtest.WaitFor(t, "closed_slow_frame to be counted", func() bool { return events("closed_slow_frame") == 1 && breaches(metric.LimitSlowFrame) == 1 })
		if n := events("closed_idle"); n != idleBefore {
			t.Fatal("the half header's link was closed as idle")
		}
		raw = switchtest.DialRaw(t, addr)
		raw.WriteHeader(t, 8000) // within max_frame, then nothing
		raw.ExpectClosed(t)
		switchtest.WaitFor(t, "closed_slow_frame to be counted", func() bool { return events("closed_slow_frame") == 2 && breaches(metric.LimitSlowFrame) == 2 })
	})
	t.Run("trickled frame", func(t *testing.T) {
		frame := switchtest.EchoFrame(t, 99)
		raw := switchtest.DialRaw(t, addr)
		raw.WriteHeader(t, len(frame))
		closed := false
		for i := range frame {
			if _, err := raw.Conn.Write(frame[i : i+1]); err != nil {
				closed = true
				break
			}
			if raw.ClosedWithin(100 * time.Millisecond) {
				closed = true
				break
			}
		}
		if !closed {
			t.Fatal("a frame trickled a byte per 100ms was read to its end")
		}
		switchtest.WaitFor(t, "the trickle to be counted", func() bool { return breaches(metric.LimitSlowFrame) == 3 })
	})
	t.Run("oversized", func(t *testing.T) {
		raw := switchtest.DialRaw(t, addr)
		raw.WriteHeader(t, 65535)
		raw.ExpectClosed(t)
		switchtest.WaitFor(t, "frame_size to be counted", func() bool { return breaches(metric.LimitFrameSize) == 1 && events("closed_bad_frame") == 1 })
	})
	t.Run("over the rate", func(t *testing.T) {
		const pan = "6228480000000901"
		if _, err := l.CreateCard(context.Background(), ledger.NewCard{PAN: pan, Currency: "156", Balance: 100000}); err != nil {
			t.Fatal(err)
		}
		// The flooding link's bucket is made full after this, and refills
		// at 5/s: what it allows in the end is bounded by the time since.
		start := time.Now()
		flood := switchtest.ConnectBank(t, addr)
		calm := switchtest.ConnectBank(t, addr)
		var mu sync.Mutex
		codes := map[string]int{}
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				r := flood.Send("0200", flood.Fields(map[int]string{2: pan, 3: "000000", 4: "000000000100"}))
				mu.Lock()
				codes[r[39]]++
				mu.Unlock()
			})
		}
		wg.Wait()
		allowed := 3 + 5*time.Since(start).Seconds()
		if codes["00"] < 3 || float64(codes["00"]) > allowed || codes["00"]+codes["91"] != 20 {
			t.Fatalf("20 debits at once at 5/s with bursts of 3 answered %v; the rate allows 3 to %.1f", codes, allowed)
		}
		c, err := l.Card(context.Background(), pan, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(100000 - 100*codes["00"]); c.Balance() != want {
			t.Fatalf("balance %d after %d approved debits, want %d", c.Balance(), codes["00"], want)
		}
		if got := breaches(metric.LimitRate); got != float64(codes["91"]) {
			t.Fatalf("%v rate breaches counted for %d declines", got, codes["91"])
		}
		// The other link has a bucket of its own.
		switchtest.WantCode(t, calm.Send("0200", calm.Fields(map[int]string{2: pan, 3: "000000", 4: "000000000100"})), "00")
		// The flooding link recovers at the configured rate.
		time.Sleep(700 * time.Millisecond)
		switchtest.WantCode(t, flood.Send("0200", flood.Fields(map[int]string{2: pan, 3: "000000", 4: "000000000100"})), "00")
	})
}

// echoFor sends echo tests on a link, one every 200ms (the bank's request
// rate), until it has been open for d, and fails if one is not answered.
// It reports whether the test itself let more than gap pass between two
// echoes.
func echoFor(t *testing.T, addr string, d, gap time.Duration) (stalled bool, err error) {
	raw := switchtest.DialRaw(t, addr)
	defer raw.Conn.Close()
	start, last := time.Now(), time.Now()
	for i := 0; time.Since(start) < d; i++ {
		now := time.Now()
		stalled = stalled || now.Sub(last) > gap
		last = now
		r, err := raw.Exchange(switchtest.EchoFrame(t, i+1))
		if err != nil {
			return stalled, fmt.Errorf("echo %d, %v after the first: %w", i+1, now.Sub(start), err)
		}
		if !bytes.HasPrefix(r, []byte("0810")) {
			return false, fmt.Errorf("echo answered %q", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false, nil
}
