package issuer

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/client"
)

// testIssuer is an issuer over books, without a fund company.
func testIssuer(b books) *Issuer {
	return &Issuer{books: b, now: time.Now, log: slog.New(slog.NewTextHandler(io.Discard, nil)), m: newMetrics(nil)}
}

// message is client.NewMessage, failing the test on an error.
func message(t testing.TB, d *iso.Dialect, mti string, fields map[int]string) *iso8583.Message {
	t.Helper()
	m, err := client.NewMessage(d, mti, fields)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
