package recon

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/ledger"
)

// BankRows reads a bank's settlement file in format f, checking each row:
// its fields' forms, and, when the bank routes by acquirer, that the row
// is the bank's. It is the ledger's ledger.Rows of the file.
func BankRows(f config.ReconFormat, bank *config.Bank, r io.Reader) *Rows[ledger.BankRow] {
	b := &bankFile{f: f, bank: bank}
	for _, a := range bank.Acquirers {
		b.acquirers = append(b.acquirers, trimZeros(a))
	}
	return &Rows[ledger.BankRow]{rs: newRecords(f, r), parse: b.parse, what: "a settlement file"}
}

// bankFile is what reading a bank's rows needs to know.
type bankFile struct {
	f         config.ReconFormat
	bank      *config.Bank
	acquirers []string
}

// Rows is a file being read, a row of type R at a time.
type Rows[R any] struct {
	rs    *records
	parse func(line int64, v map[string]string) (R, error)
	what  string // the kind of file, for an empty one's error
	row   R
	err   error
}

// Next reads the next row; false at the end or on an error.
func (b *Rows[R]) Next() (ok bool) {
	defer func() {
		// Reading runs where the database's copy pulls it, on a goroutine
		// of its own: whatever goes wrong in it is the file's error, never
		// the switch's end.
		if v := recover(); v != nil {
			b.err, ok = fmt.Errorf("reading line %d: %v", b.rs.line, v), false
		}
	}()
	if b.err != nil || !b.rs.next() {
		return false
	}
	row, err := b.parse(b.rs.line, b.rs.values)
	if err != nil {
		b.err = err
		return false
	}
	b.row = row
	return true
}

// Row is the row Next read.
func (b *Rows[R]) Row() R { return b.row }

// Err is why reading stopped before the end, if it did.
func (b *Rows[R]) Err() error {
	if b.err != nil {
		return b.err
	}
	if errors.Is(b.rs.err, ErrEmpty) {
		return fmt.Errorf("%w: %s has at least its header row", ErrEmpty, b.what)
	}
	return b.rs.err
}

func (b *bankFile) parse(line int64, v map[string]string) (ledger.BankRow, error) {
	bad := func(field, format string, a ...any) error {
		return &LineError{Line: line, Field: field, Err: fmt.Errorf(format, a...)}
	}
	r := ledger.BankRow{Line: line, Terminal: v["terminal"], RRN: v["rrn"], Transmitted: v["transmitted"],
		MTI: v["mti"], Processing: v["processing_code"], Currency: v["currency"], ResponseCode: v["response_code"]}
	acq := v["acquirer"]
	if !digits(acq, 1, 11) {
		return r, bad("acquirer", "%s is not 1 to 11 digits (DE32)", quote(acq))
	}
	r.Acquirer = trimZeros(acq)
	if len(b.acquirers) > 0 && !slices.Contains(b.acquirers, r.Acquirer) {
		return r, bad("acquirer", "%s is not bank %s's (its acquirers are %s): is this another bank's file?",
			acq, b.bank.Code, strings.Join(b.bank.Acquirers, ", "))
	}
	if r.Terminal == "" || len(r.Terminal) > 8 {
		return r, bad("terminal", "%s is not a terminal id of up to 8 characters (DE41)", quote(r.Terminal))
	}
	if !digits(v["stan"], 1, 6) {
		return r, bad("stan", "%s is not 1 to 6 digits (DE11)", quote(v["stan"]))
	}
	r.STAN = strings.Repeat("0", 6-len(v["stan"])) + v["stan"]
	if r.RRN == "" || len(r.RRN) > 12 {
		return r, bad("rrn", "%s is not a retrieval reference number (DE37)", quote(r.RRN))
	}
	if !digits(r.Transmitted, 10, 10) || !validMMDDhhmmss(r.Transmitted) {
		return r, bad("transmitted", "%s is not a transmission date and time MMDDhhmmss (DE7)", quote(r.Transmitted))
	}
	if r.MTI != "" && !digits(r.MTI, 4, 4) {
		return r, bad("mti", "%s is not an MTI", quote(r.MTI))
	}
	if r.Processing != "" && !digits(r.Processing, 6, 6) {
		return r, bad("processing_code", "%s is not a processing code (DE3)", quote(r.Processing))
	}
	amt, err := amount(b.f, v["amount"])
	if err != nil {
		return r, &LineError{Line: line, Field: "amount", Err: err}
	}
	r.Amount = amt
	if !digits(r.Currency, 3, 3) {
		return r, bad("currency", "%s is not an ISO 4217 numeric code (DE49)", quote(r.Currency))
	}
	if r.ResponseCode != "" && len(r.ResponseCode) != 2 {
		return r, bad("response_code", "%s is not a response code (DE39)", quote(r.ResponseCode))
	}
	return r, nil
}

func validMMDDhhmmss(s string) bool {
	n := func(i int) int { return int(s[i]-'0')*10 + int(s[i+1]-'0') }
	mm, dd, hh, mi, ss := n(0), n(2), n(4), n(6), n(8)
	return mm >= 1 && mm <= 12 && dd >= 1 && dd <= 31 && hh <= 23 && mi <= 59 && ss <= 59
}

// trimZeros is a DE32 as the ledger keeps it: leading zeros removed, one
// kept of all zeros.
func trimZeros(s string) string {
	t := strings.TrimLeft(s, "0")
	if t == "" && s != "" {
		return "0"
	}
	return t
}
