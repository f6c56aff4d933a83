package main

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/internal/client"
)

// echoFrame is a packed 0800 echo test with the given STAN.
func echoFrame(t *testing.T, stan int) []byte {
	t.Helper()
	d, err := iso.Builtin(iso.DefaultDialect)
	if err != nil {
		t.Fatal(err)
	}
	m, err := client.NewMessage(d, "0800", map[int]string{7: "1125101010", 11: fmt.Sprintf("%06d", stan), 70: "301"})
	if err != nil {
		t.Fatal(err)
	}
	packed, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return packed
}

// TestLinkReadLimits: an idle link, a frame that never completes, a
// trickled frame and an oversized one each close only their own link,
// counted by limit; a link over its request rate gets 91s that post
// nothing, and its well-behaved neighbour is untouched.
func TestLinkReadLimits(t *testing.T) {
	t.Parallel()
	srv, l := startServer(t, "banks/default", `{"listen":"127.0.0.1:0","max_in_flight":8,
		"idle_timeout":"1500ms","frame_timeout":"300ms","max_request_rate":5,"rate_burst":3}`)
	addr := srv.BankAddr("default").String()
	admin := srv.AdminAddr().String()
	count := func(name string, labels map[string]string) float64 {
		return total(scrapeMetrics(t, admin)[name], labels)
	}
	breaches := func(limit string) float64 {
		return count("goldcard_limit_breaches_total", map[string]string{"bank": "default", "limit": limit})
	}
	events := func(event string) float64 {
		return count("goldcard_connection_events_total", map[string]string{"bank": "default", "event": event})
	}
	for _, limit := range []string{limitIdle, limitSlowFrame, limitFrameSize, limitRate} {
		if breaches(limit) != 0 {
			t.Fatalf("%s breaches before any link", limit)
		}
	}

	const idle = 1500 * time.Millisecond
	t.Run("idle", func(t *testing.T) {
		start := time.Now() // the switch's idle clock starts after this
		raw := dialRaw(t, addr)
		raw.expectClosed(t)
		if took := time.Since(start); took < idle {
			t.Fatalf("closed after %v, before the idle timeout", took)
		}
		waitFor(t, "closed_idle to be counted", func() bool { return events("closed_idle") == 1 && breaches(limitIdle) == 1 })
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
		raw := dialRaw(t, addr)
		if _, err := raw.c.Write([]byte{0x01}); err != nil { // half a header
			t.Fatal(err)
		}
		raw.expectClosed(t)
		// By the frame timeout from its first byte, not the idle timeout.
		waitFor(t, "closed_slow_frame to be counted", func() bool { return events("closed_slow_frame") == 1 && breaches(limitSlowFrame) == 1 })
		if n := events("closed_idle"); n != idleBefore {
			t.Fatal("the half header's link was closed as idle")
		}
		raw = dialRaw(t, addr)
		raw.writeHeader(t, 8000) // within max_frame, then nothing
		raw.expectClosed(t)
		waitFor(t, "closed_slow_frame to be counted", func() bool { return events("closed_slow_frame") == 2 && breaches(limitSlowFrame) == 2 })
	})
	t.Run("trickled frame", func(t *testing.T) {
		frame := echoFrame(t, 99)
		raw := dialRaw(t, addr)
		raw.writeHeader(t, len(frame))
		closed := false
		for i := range frame {
			if _, err := raw.c.Write(frame[i : i+1]); err != nil {
				closed = true
				break
			}
			if raw.closedWithin(100 * time.Millisecond) {
				closed = true
				break
			}
		}
		if !closed {
			t.Fatal("a frame trickled a byte per 100ms was read to its end")
		}
		waitFor(t, "the trickle to be counted", func() bool { return breaches(limitSlowFrame) == 3 })
	})
	t.Run("oversized", func(t *testing.T) {
		raw := dialRaw(t, addr)
		raw.writeHeader(t, 65535)
		raw.expectClosed(t)
		waitFor(t, "frame_size to be counted", func() bool { return breaches(limitFrameSize) == 1 && events("closed_bad_frame") == 1 })
	})
	t.Run("over the rate", func(t *testing.T) {
		const pan = "6228480000000901"
		if _, err := l.CreateCard(context.Background(), ledger.NewCard{PAN: pan, Currency: "156", Balance: 100000}); err != nil {
			t.Fatal(err)
		}
		// The flooding link's bucket is made full after this, and refills
		// at 5/s: what it allows in the end is bounded by the time since.
		start := time.Now()
		flood := connectBank(t, addr)
		calm := connectBank(t, addr)
		var mu sync.Mutex
		codes := map[string]int{}
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				r := flood.send("0200", flood.fields(map[int]string{2: pan, 3: "000000", 4: "000000000100"}))
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
		if got := breaches(limitRate); got != float64(codes["91"]) {
			t.Fatalf("%v rate breaches counted for %d declines", got, codes["91"])
		}
		// The other link has a bucket of its own.
		wantCode(t, calm.send("0200", calm.fields(map[int]string{2: pan, 3: "000000", 4: "000000000100"})), "00")
		// The flooding link recovers at the configured rate.
		time.Sleep(700 * time.Millisecond)
		wantCode(t, flood.send("0200", flood.fields(map[int]string{2: pan, 3: "000000", 4: "000000000100"})), "00")
	})
}

// echoFor sends echo tests on a link, one every 200ms (the bank's request
// rate), until it has been open for d, and fails if one is not answered.
// It reports whether the test itself let more than gap pass between two
// echoes.
func echoFor(t *testing.T, addr string, d, gap time.Duration) (stalled bool, err error) {
	raw := dialRaw(t, addr)
	defer raw.c.Close()
	start, last := time.Now(), time.Now()
	for i := 0; time.Since(start) < d; i++ {
		now := time.Now()
		stalled = stalled || now.Sub(last) > gap
		last = now
		r, err := raw.exchange(echoFrame(t, i+1))
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
