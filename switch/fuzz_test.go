package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
)

// FuzzHandle runs arbitrary message bodies through the processor with a
// ledger that keeps nothing: whatever arrives is answered or dropped,
// never a panic.
func FuzzHandle(f *testing.F) {
	d, err := iso.Builtin(iso.DefaultDialect)
	if err != nil {
		f.Fatal(err)
	}
	for _, mti := range []string{"0100", "0200", "0220", "0400", "0800"} {
		m, _ := newMessage(d, mti, map[int]string{2: "6228480000000001", 3: "000000", 4: "000000000100", 7: "1125101010",
			11: "000001", 32: "1234", 37: "000000000001", 41: "ATM00001", 49: "156", 70: "301",
			90: "020000000111251010100000000123400000000000"})
		b, _ := m.Pack()
		f.Add(b)
	}
	p := &processor{books: memBooks{}, now: time.Now, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	bank := config.DefaultBank(":0")
	lim := config.DefaultLimits()
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, err := d.Unpack(body)
		if err != nil {
			return
		}
		p.handle(context.Background(), bank, d, lim, msg)
	})
}
