package iso

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/moov-io/iso8583"
)

// Why a switch answers a request without deciding it, beside ErrFormat and
// the MAC errors; the issuer maps each to its response code (DE39).
var (
	// ErrUnroutable is a request no bank on its link serves (92).
	ErrUnroutable = errors.New("iso: no issuer serves the message")
	// ErrUnavailable is a request the switch cannot work on now (91).
	ErrUnavailable = errors.New("iso: issuer unavailable")
)

// EchoFields are copied from a request into its response when present.
var EchoFields = []int{2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 70, 90, 95}

// Respond starts the response to req: the response MTI and the echoed
// fields. A field the request carried but that cannot be copied is left
// out, and so is one the request carried empty (an LLVAR of length 00):
// a field of no length is malformed to the bank's side, and echoing it
// says nothing.
func Respond(d *Dialect, req *iso8583.Message) (*iso8583.Message, error) {
	mti, _ := req.GetMTI()
	rmti, ok := ResponseMTI(mti)
	if !ok {
		return nil, fmt.Errorf("iso: MTI %q has no response", mti)
	}
	resp := iso8583.NewMessage(d.Spec)
	resp.MTI(rmti)
	for _, id := range EchoFields {
		b, err := req.GetBytes(id)
		if err != nil || len(b) == 0 {
			continue
		}
		_ = resp.BinaryField(id, b)
	}
	return resp, nil
}

// Balance is one amount of DE54.
type Balance struct {
	AccountType string // "10" card account, "91" fund account
	AmountType  string // "01" ledger / fund balance, "02" available / redeemable now
	Currency    string
	Amount      int64
}

// DE54 account and amount types.
const (
	AccountCard     = "10"
	AccountFund     = "91"
	AmountLedger    = "01"
	AmountAvailable = "02"
)

// FormatBalances encodes DE54: per amount 20 characters, account type (2),
// amount type (2), currency (3), C or D (1) and 12 digits of minor units.
func FormatBalances(bs []Balance) string {
	out := make([]byte, 0, 20*len(bs))
	for _, b := range bs {
		sign, amt := byte('C'), b.Amount
		if amt < 0 {
			sign, amt = 'D', -amt
		}
		out = appendPadded(out, b.AccountType, 2)
		out = appendPadded(out, b.AmountType, 2)
		out = appendPadded(out, b.Currency, 3)
		out = append(out, sign)
		var digits [20]byte
		d := strconv.AppendInt(digits[:0], amt, 10)
		for range 12 - len(d) {
			out = append(out, '0')
		}
		out = append(out, d...)
	}
	return string(out)
}

// appendPadded appends s cut or padded with spaces to n characters.
func appendPadded(out []byte, s string, n int) []byte {
	for _, r := range s {
		if n == 0 {
			break
		}
		out = utf8.AppendRune(out, r)
		n--
	}
	for ; n > 0; n-- {
		out = append(out, ' ')
	}
	return out
}

// ParseBalances decodes DE54.
func ParseBalances(s string) ([]Balance, error) {
	if len(s)%20 != 0 {
		return nil, fmt.Errorf("iso: DE54 length %d is not a multiple of 20", len(s))
	}
	var out []Balance
	for i := 0; i < len(s); i += 20 {
		e := s[i : i+20]
		if (e[7] != 'C' && e[7] != 'D') || !isDigits(e[8:], 12) {
			return nil, fmt.Errorf("iso: DE54 amount %d is malformed", i/20+1)
		}
		var amt int64
		for _, c := range e[8:] {
			amt = amt*10 + int64(c-'0')
		}
		if e[7] == 'D' {
			amt = -amt
		}
		out = append(out, Balance{AccountType: e[0:2], AmountType: e[2:4], Currency: e[4:7], Amount: amt})
	}
	return out, nil
}
