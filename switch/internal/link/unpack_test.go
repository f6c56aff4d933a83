package link_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/metric"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// TestTrailingBytesAnswered30: a frame with bytes after the last field
// its bitmap announces is a format error, answered 30 and counted as
// such, and posts nothing: an 0800 with four stray bytes, and a
// Postilion-style 0200 whose DE127 has a six-digit length and a
// sub-bitmap, which the LLLVAR DE127 of the shipped dialects reads short.
func TestTrailingBytesAnswered30(t *testing.T) {
	t.Parallel()
	srv, l := switchtest.StartServer(t)
	addr, admin := srv.BankAddr("default").String(), srv.AdminAddr().String()
	d, err := iso.Builtin(iso.DefaultDialect)
	if err != nil {
		t.Fatal(err)
	}
	unpackErrors := func(reason string) float64 {
		return switchtest.Total(switchtest.Scrape(t, admin)["goldcard_unpack_errors_total"], map[string]string{"bank": "default", "reason": reason})
	}
	fams := switchtest.Scrape(t, admin)
	for _, reason := range []string{metric.UnpackMTI, metric.UnpackBitmap, metric.UnpackField, metric.UnpackTrailing} {
		if f := fams["goldcard_unpack_errors_total"]; f == nil || !f.Labels["reason"][reason] || unpackErrors(reason) != 0 {
			t.Fatalf("goldcard_unpack_errors_total{reason=%q} is not at zero before any frame", reason)
		}
	}
	answer := func(t *testing.T, raw *switchtest.Raw, body []byte) map[int]string {
		t.Helper()
		m, err := d.Unpack(raw.RoundTrip(t, body))
		if err != nil {
			t.Fatalf("the answer does not unpack: %v", err)
		}
		return switchtest.FieldsOf(t, m)
	}

	t.Run("0800 with stray bytes", func(t *testing.T) {
		raw := switchtest.DialRaw(t, addr)
		r := answer(t, raw, append(switchtest.EchoFrame(t, 41), "ABCD"...))
		switchtest.WantCode(t, r, "30")
		if r[11] != "000041" {
			t.Fatalf("DE11 %q, want the request's", r[11])
		}
		if got := unpackErrors(metric.UnpackTrailing); got != 1 {
			t.Fatalf("%v trailing_bytes errors counted, want 1", got)
		}
		// The link carries on.
		switchtest.WantCode(t, answer(t, raw, switchtest.EchoFrame(t, 42)), "00")
	})

	t.Run("Postilion DE127", func(t *testing.T) {
		const pan = "6228480000000127"
		ctx := context.Background()
		if _, err := l.CreateCard(ctx, ledger.NewCard{PAN: pan, Currency: "156", Balance: 100000}); err != nil {
			t.Fatal(err)
		}
		raw := switchtest.DialRaw(t, addr)
		r := answer(t, raw, postilionDebit(t, d, pan))
		if mti := r[0]; mti != "0210" {
			t.Fatalf("answered %s", mti)
		}
		switchtest.WantCode(t, r, "30")
		if got := unpackErrors(metric.UnpackTrailing); got != 2 {
			t.Fatalf("%v trailing_bytes errors counted, want 2", got)
		}
		c, err := l.Card(ctx, pan, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if c.Balance() != 100000 || c.Available() != 100000 {
			t.Fatalf("balance %d, available %d after a refused debit; want 100000", c.Balance(), c.Available())
		}
	})
	for _, reason := range []string{metric.UnpackMTI, metric.UnpackBitmap, metric.UnpackField} {
		if got := unpackErrors(reason); got != 0 {
			t.Errorf("%v %s errors counted for frames with trailing bytes", got, reason)
		}
	}
}

// postilionDebit is a 0200 debit of ¥100.00 with DE127 as Postilion
// writes it: a six-digit length, the bitmap of its subfields, then DE127.2.
func postilionDebit(t *testing.T, d *iso.Dialect, pan string) []byte {
	t.Helper()
	m, err := client.NewMessage(d, "0200", map[int]string{2: pan, 3: "000000", 4: "000000010000", 7: "1125101010", 11: "000127",
		12: "101010", 13: "1125", 32: "1234", 37: "000000000127", 41: "ATM00001", 42: "MERCHANT0000001", 49: "156",
		127: "x"})
	if err != nil {
		t.Fatal(err)
	}
	body, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	cut, ok := bytes.CutSuffix(body, []byte("001x"))
	if !ok {
		t.Fatalf("DE127 is not last: %q", body)
	}
	de127 := "4000000000000000" + "12" + "POSTILIONREF"
	return append(cut, fmt.Sprintf("%06d%s", len(de127), de127)...)
}

// TestFirstFrameUnreadable: connections whose very first frame cannot be
// unpacked are answered 30 each, and the switch carries on: the answer may
// be ready before the link has finished starting.
func TestFirstFrameUnreadable(t *testing.T) {
	t.Parallel()
	srv, _ := switchtest.StartServer(t)
	addr := srv.BankAddr("default").String()
	d, err := iso.Builtin(iso.DefaultDialect)
	if err != nil {
		t.Fatal(err)
	}
	frame := append(switchtest.EchoFrame(t, 43), "ABCD"...)
	for i := range 100 {
		raw := switchtest.DialRaw(t, addr)
		m, err := d.Unpack(raw.RoundTrip(t, frame))
		if err != nil {
			t.Fatalf("connection %d: the answer does not unpack: %v", i, err)
		}
		switchtest.WantCode(t, switchtest.FieldsOf(t, m), "30")
		raw.Conn.Close()
	}
}
