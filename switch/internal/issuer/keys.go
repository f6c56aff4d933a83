package issuer

import (
	"crypto/rand"
	"encoding/binary"
	"strconv"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
)

// keyOf is the idempotency key of a request: the fields its bank names
// as identifying a transaction and, for a reversal, what it says stands.
func keyOf(bank *config.Bank, r *iso.Request) ledger.Key {
	k := ledger.Key{
		Bank: bank.Code, Class: r.MTIClass(), Fields: bank.TxnKey,
		Acquirer: r.Acquirer, STAN: r.STAN, Transmitted: r.Transmitted, Terminal: r.Terminal, RRN: r.RRN,
		LocalDate: r.LocalDate, LocalTime: r.LocalTime, Merchant: r.Merchant,
	}
	if r.Class.IsReversal() && r.Actual != nil {
		k.Actual = strconv.FormatInt(*r.Actual, 10)
	}
	return k
}

// origKey is the original DE90 names, if any.
func origKey(r *iso.Request) *ledger.OrigKey {
	o := r.Original
	if o == nil {
		return nil
	}
	return &ledger.OrigKey{Class: o.MTI[:3], Acquirer: o.Acquirer, STAN: o.STAN, Transmitted: o.Transmitted}
}

// originalRef finds the original a reversal or completion names: by DE90
// (with another DE7 too, of the same RRN or amount, when the bank's key
// leaves DE7 out: an acquirer that stamps DE7 afresh may name any
// transmission's), else by DE32, DE37, DE41 and DE11.
func originalRef(bank *config.Bank, r *iso.Request, classes ...string) ledger.OriginalRef {
	ref := ledger.OriginalRef{Bank: bank.Code, Terminal: r.Terminal, Acquirer: r.Acquirer, RRN: r.RRN, STAN: r.STAN, Classes: classes,
		Amount: r.Amount, LocalDate: r.LocalDate, LocalTime: r.LocalTime}
	if o := origKey(r); o != nil {
		ref.ByDE90, ref.AnyTransmission = o, !keyOf(bank, r).Names(ledger.FieldTransmitted)
	}
	return ref
}

// serialOf names the transaction a request belongs to (ledger.SerialKey):
// DE90's original where there is one, else the request's own fields.
func serialOf(bank *config.Bank, r *iso.Request) string {
	if o := r.Original; o != nil {
		return ledger.SerialKey(bank.Code, o.Acquirer, o.STAN, r.Terminal)
	}
	return ledger.SerialKey(bank.Code, r.Acquirer, r.STAN, r.Terminal)
}

var txnNames = map[string]string{
	iso.TxnPurchase: ledger.KindPurchase,
	iso.TxnCash:     ledger.KindCash,
	iso.TxnRefund:   ledger.KindRefund,
	iso.TxnDeposit:  ledger.KindDeposit,
	iso.TxnBalance:  "balance",
}

func txnName(code string) string {
	if n, ok := txnNames[code]; ok {
		return n
	}
	return "other"
}

func isDebit(code string) bool  { return code == iso.TxnPurchase || code == iso.TxnCash }
func isCredit(code string) bool { return code == iso.TxnRefund || code == iso.TxnDeposit }

// newAuthCode returns a random six-digit approval code (DE38).
func newAuthCode() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	// 2^64 is so much larger than a million that the modulo's bias is
	// immeasurable.
	n := binary.BigEndian.Uint64(b[:]) % 1_000_000
	var code [6]byte
	for i := 5; i >= 0; i-- {
		code[i] = byte('0' + n%10)
		n /= 10
	}
	return string(code[:])
}

// received is when r arrived, or now when that is not known.
func received(r *iso.Request) time.Time {
	if r.Received.IsZero() {
		return time.Now()
	}
	return r.Received
}

// businessDate is the date r settles on, decided at now: its DE15 in the
// year that puts it nearest the bank's own date for now, from the day
// before to a week after it (a settlement date further off is the bank's
// mistake, and one further back would land on a date reconciled already),
// else that date (now and the bank's cutover).
func businessDate(bank *config.Bank, r *iso.Request, now time.Time) time.Time {
	own := bank.BusinessDate(now)
	if len(r.Settlement) != 4 {
		return own
	}
	month, day := time.Month(atoi(r.Settlement[:2])), atoi(r.Settlement[2:])
	var best time.Time
	for _, y := range []int{own.Year() - 1, own.Year(), own.Year() + 1} {
		d := time.Date(y, month, day, 0, 0, 0, 0, time.UTC)
		if d.Month() != month { // 29 February of a year without one
			continue
		}
		if best.IsZero() || absDays(d.Sub(own)) < absDays(best.Sub(own)) {
			best = d
		}
	}
	if best.IsZero() || best.Before(own.AddDate(0, 0, -1)) || best.After(own.AddDate(0, 0, 7)) {
		return own
	}
	return best
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func absDays(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// fingerprint is r's content fingerprint as the ledger keeps it: keyed, so
// that it reveals nothing of the PAN in it.
func (p *Issuer) fingerprint(r *iso.Request) []byte {
	switch {
	case r.Keyed != nil:
		return r.Keyed
	case p.keyFP == nil:
		return r.Fingerprint()
	}
	return p.keyFP(r.Fingerprint())
}

// record is the ledger record of a decided request.
func (p *Issuer) record(bank *config.Bank, r *iso.Request, o decision) ledger.Record {
	rec := ledger.Record{
		Key:          keyOf(bank, r),
		MTI:          r.MTI,
		Currency:     r.Currency,
		Fingerprint:  p.fingerprint(r),
		TxnType:      txnName(r.TxnType),
		Amount:       r.Amount,
		ResponseCode: responseCode(o.err),
		AuthCode:     o.authCode,
		BusinessDate: businessDate(bank, r, received(r)),
	}
	if o.card != nil {
		rec.CardID = o.card.ID
	}
	return rec
}
