package main

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/goldcard/goldcard/switch/internal/client"
)

// inFlight reads goldcard_requests_in_flight for the default bank.
func (d *instance) inFlight() int {
	m := regexp.MustCompile(`goldcard_requests_in_flight\{bank="default"\} (\d+)`).FindStringSubmatch(d.metrics())
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestGracefulShutdown sends SIGTERM while a request waits on the ledger:
// the switch stops accepting, answers that request, then exits cleanly.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, "--auth-timeout", "20s")
	const pan = "6228480000000042"
	d.addCard(pan, 10000, 0)
	bank := connectBank(t, d.bank)
	// The request goes over a plain socket: moov's client may report a
	// response and the close that follows it in either order.
	raw := dialRaw(t, d.bank)

	// Hold the card's rows so the request stays in flight.
	ctx := context.Background()
	db, err := pgx.Connect(ctx, d.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM accounts a JOIN cards c ON c.id = a.card_id WHERE c.pan = $1 FOR UPDATE`, pan); err != nil {
		t.Fatal(err)
	}

	m, err := client.NewMessage(bank.d, "0200", bank.fields(map[int]string{2: pan, 3: "000000", 4: "000000001000"}))
	if err != nil {
		t.Fatal(err)
	}
	body, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	raw.write(t, body)
	answered := make(chan map[int]string, 1)
	go func() {
		var h [2]byte
		if _, err := io.ReadFull(raw.c, h[:]); err != nil {
			close(answered)
			return
		}
		resp := make([]byte, binary.BigEndian.Uint16(h[:]))
		if _, err := io.ReadFull(raw.c, resp); err != nil {
			close(answered)
			return
		}
		rm, err := bank.d.Unpack(resp)
		if err != nil {
			close(answered)
			return
		}
		answered <- fieldsOf(t, rm)
	}()
	waitFor(t, "the request to be in flight", func() bool { return d.inFlight() == 1 })

	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", d.bank, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case r := <-answered:
		t.Fatalf("answered while the ledger was locked: %v", r)
	default:
	}

	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case r, ok := <-answered:
		if !ok {
			t.Fatal("the link closed without answering")
		}
		wantCode(t, r, "00")
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight was not answered")
	}
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the switch did not exit")
	}
}

// waitFor polls cond until it holds, for at most 30s: long enough for a
// busy machine, and a test that waits for an event fails only when it
// does not come.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
