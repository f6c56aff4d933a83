package main

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// TestGracefulShutdown sends SIGTERM while a request waits on the ledger:
// the switch stops accepting, answers that request, then exits cleanly.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	d := switchtest.Start(t, "--auth-timeout", "20s")
	const pan = "6228480000000042"
	d.AddCard(pan, 10000, 0)
	bank := switchtest.ConnectBank(t, d.Bank)
	// The request goes over a plain socket: moov's client may report a
	// response and the close that follows it in either order.
	raw := switchtest.DialRaw(t, d.Bank)

	// Hold the card's rows so the request stays in flight.
	ctx := context.Background()
	db, err := pgx.Connect(ctx, d.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM accounts a JOIN cards c ON c.id = a.card_id WHERE c.ref = $1 FOR UPDATE`, d.CardID(pan)); err != nil {
		t.Fatal(err)
	}

	m, err := client.NewMessage(bank.Dialect, "0200", bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000001000"}))
	if err != nil {
		t.Fatal(err)
	}
	body, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	raw.Write(t, body)
	answered := make(chan map[int]string, 1)
	go func() {
		var h [2]byte
		if _, err := io.ReadFull(raw.Conn, h[:]); err != nil {
			close(answered)
			return
		}
		resp := make([]byte, binary.BigEndian.Uint16(h[:]))
		if _, err := io.ReadFull(raw.Conn, resp); err != nil {
			close(answered)
			return
		}
		rm, err := bank.Dialect.Unpack(resp)
		if err != nil {
			close(answered)
			return
		}
		answered <- switchtest.FieldsOf(t, rm)
	}()
	switchtest.WaitFor(t, "the request to be in flight", func() bool { return d.InFlight() == 1 })

	_ = d.Cmd.Process.Signal(syscall.SIGTERM)
	switchtest.WaitFor(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", d.Bank, time.Second)
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
		switchtest.WantCode(t, r, "00")
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight was not answered")
	}
	select {
	case err := <-d.Done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the switch did not exit")
	}
}
