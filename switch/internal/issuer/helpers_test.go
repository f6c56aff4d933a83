package issuer

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/goldcard/goldcard/iso"
)

// testIssuer is an issuer over books, without a fund company.
func testIssuer(b books) *Issuer {
	return &Issuer{books: b, now: time.Now, log: slog.New(slog.NewTextHandler(io.Discard, nil)), m: newMetrics(nil)}
}

// message builds a message of dialect d from field values.
func message(t testing.TB, d *iso.Dialect, mti string, fields map[int]string) *iso8583.Message {
	t.Helper()
	m := d.NewMessage()
	m.MTI(mti)
	for id, v := range fields {
		if err := d.SetField(m, id, v); err != nil {
			t.Fatalf("DE%d: %v", id, err)
		}
	}
	return m
}
