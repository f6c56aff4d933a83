package recon

import (
	"fmt"
	"io"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/ledger"
)

// FundRows reads the fund company's confirmation file in format f.
func FundRows(f config.ReconFormat, r io.Reader) *Rows[ledger.FundRow] {
	return &Rows[ledger.FundRow]{rs: newRecords(f, r), parse: (&fundFile{f: f}).parse, what: "a confirmation file"}
}

// fundFile is what reading the fund company's rows needs to know.
type fundFile struct{ f config.ReconFormat }

func (b *fundFile) parse(line int64, v map[string]string) (ledger.FundRow, error) {
	bad := func(field, format string, a ...any) error {
		return &LineError{Line: line, Field: field, Err: fmt.Errorf(format, a...)}
	}
	r := ledger.FundRow{Line: line, OrderID: v["order_id"], Kind: v["kind"], Currency: v["currency"], Status: v["status"], TradeDate: v["trade_date"]}
	if !orderID(r.OrderID) {
		return r, bad("order_id", "%s is not an order id (8 to 64 letters, digits, _ or -)", quote(r.OrderID))
	}
	if r.Kind != "redemption" && r.Kind != "subscription" {
		return r, bad("kind", "%s must be redemption or subscription", quote(r.Kind))
	}
	amt, err := amount(b.f, v["amount"])
	if err != nil {
		return r, &LineError{Line: line, Field: "amount", Err: err}
	}
	if amt == 0 {
		return r, bad("amount", "an order of nothing")
	}
	r.Amount = amt
	if !digits(r.Currency, 3, 3) {
		return r, bad("currency", "%s is not an ISO 4217 numeric code", quote(r.Currency))
	}
	if r.Status != "confirmed" && r.Status != "failed" {
		return r, bad("status", "%s must be confirmed or failed", quote(r.Status))
	}
	if r.TradeDate != "" {
		if _, err := time.Parse(time.DateOnly, r.TradeDate); err != nil {
			return r, bad("trade_date", "%s is not a date as YYYY-MM-DD", quote(r.TradeDate))
		}
	}
	return r, nil
}

func orderID(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
