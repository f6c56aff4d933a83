package issuer

import (
	"testing"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
)

// TestBusinessDate: a request's DE15 is its business date, in the year
// nearest the bank's own date for its arrival (so a settlement date of
// 31 December sent on 1 January is last year's), from the day before it
// to a week after;
// without one, the arrival and the bank's cutover decide.
func TestBusinessDate(t *testing.T) {
	sh, _ := time.LoadLocation("Asia/Shanghai")
	bank := config.DefaultBank(":0")
	late := config.DefaultBank(":0")
	late.Cutover = "23:00"
	for _, c := range []struct {
		bank       *config.Bank
		settlement string
		at         time.Time
		want       string
	}{
		{bank, "", time.Date(2026, 12, 1, 10, 0, 0, 0, sh), "2026-12-01"},
		{late, "", time.Date(2026, 12, 1, 23, 10, 0, 0, sh), "2026-12-02"},
		{bank, "1202", time.Date(2026, 12, 1, 23, 10, 0, 0, sh), "2026-12-02"},
		{bank, "1231", time.Date(2027, 1, 1, 0, 5, 0, 0, sh), "2026-12-31"},
		{bank, "0101", time.Date(2026, 12, 31, 23, 50, 0, 0, sh), "2027-01-01"},
		{bank, "0229", time.Date(2028, 3, 1, 9, 0, 0, 0, sh), "2028-02-29"},
		{bank, "0229", time.Date(2027, 3, 1, 9, 0, 0, 0, sh), "2027-03-01"},  // no 29 February within a week: its own date
		{bank, "0601", time.Date(2026, 12, 1, 9, 0, 0, 0, sh), "2026-12-01"}, // half a year off: the bank's mistake
		{bank, "1129", time.Date(2026, 12, 1, 9, 0, 0, 0, sh), "2026-12-01"}, // two days back: a date reconciled already
		{bank, "1130", time.Date(2026, 12, 1, 9, 0, 0, 0, sh), "2026-11-30"},
	} {
		got := businessDate(c.bank, &iso.Request{Settlement: c.settlement}, c.at).Format(time.DateOnly)
		if got != c.want {
			t.Errorf("DE15 %q at %s (cutover %s): %s, want %s", c.settlement, c.at, c.bank.Cutover, got, c.want)
		}
	}
}
