package iso

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/moov-io/iso8583"
	"github.com/moov-io/iso8583/encoding"
	"github.com/moov-io/iso8583/field"
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

// A Value is one field a response sets, in the text Message.Field takes.
type Value struct {
	ID    int
	Value string
}

// maxField is the highest field id a response may carry: three bitmaps.
const maxField = 192

// echoed marks EchoFields by id.
var echoed = func() (e [maxField + 1]bool) {
	for _, id := range EchoFields {
		e[id] = true
	}
	return e
}()

// Reply packs the response to the request req was unpacked from, body,
// as Respond, Field for each of vals and Pack would, without building a
// message: the response MTI, a bitmap, each echoed field the request
// carried with a value copied from body byte for byte, and vals packed by
// the dialect. vals are in increasing id order; one that is also echoed
// replaces the echo. The bytes echoed are the bank's own, so a field its
// dialect reads and writes back differently (a pad, an odd BCD digit) is
// answered as it was sent.
func (d *Dialect) Reply(body []byte, req *iso8583.Message, vals []Value) ([]byte, error) {
	mti, err := req.GetMTI()
	if err != nil {
		return nil, fmt.Errorf("iso: reading the MTI: %w", err)
	}
	rmti, ok := ResponseMTI(mti)
	if !ok {
		return nil, fmt.Errorf("iso: MTI %q has no response", mti)
	}
	bmSpec, ok := d.Spec.Fields[1].(*field.Bitmap)
	if !ok {
		return nil, fmt.Errorf("iso: dialect %s: DE1 is not a bitmap", d.Name)
	}
	// The bitmap is read from body: req's own is rebuilt by moov when
	// req is packed, and may then say less than body holds.
	mtiLen, _, err := fieldLength(d.Spec.Fields[0], body)
	if err != nil {
		return nil, fmt.Errorf("iso: measuring the MTI: %w", err)
	}
	reqBM := field.NewBitmap(bmSpec.Spec())
	if _, err := reqBM.Unpack(body[mtiLen:]); err != nil {
		return nil, fmt.Errorf("iso: reading the bitmap: %w", err)
	}
	var spans [maxField + 1]fieldSpan
	n, err := walkFields(d.Spec, reqBM, body, func(id int, s fieldSpan) {
		if id <= maxField && echoed[id] && !s.empty && !padOnly(d.Spec.Fields[id], body[s.off:s.off+s.n]) {
			spans[id] = s
		}
	})
	if err != nil {
		return nil, fmt.Errorf("iso: measuring the request: %w", err)
	}
	if n != len(body) {
		return nil, fmt.Errorf("iso: the request's fields take %d of its %d bytes", n, len(body))
	}
	bm := field.NewBitmap(bmSpec.Spec())
	last := 1
	for _, v := range vals {
		if v.ID <= last || v.ID > maxField || d.Spec.Fields[v.ID] == nil {
			return nil, fmt.Errorf("iso: DE%d cannot be set in a response here", v.ID)
		}
		spans[v.ID], last = fieldSpan{}, v.ID
		bm.Set(v.ID)
	}
	for id := 2; id <= maxField; id++ {
		if spans[id].n > 0 {
			bm.Set(id)
		}
	}
	out := make([]byte, 0, len(body)+64)
	if out, err = appendValue(out, d.Spec.Fields[0], rmti); err != nil {
		return nil, fmt.Errorf("iso: packing the MTI: %w", err)
	}
	packed, err := bm.Pack()
	if err != nil {
		return nil, fmt.Errorf("iso: packing the bitmap: %w", err)
	}
	out = append(out, packed...)
	for id := 2; id <= maxField; id++ {
		switch {
		case len(vals) > 0 && vals[0].ID == id:
			if out, err = appendValue(out, d.Spec.Fields[id], vals[0].Value); err != nil {
				return nil, fmt.Errorf("iso: packing DE%d: %w", id, err)
			}
			vals = vals[1:]
		case spans[id].n > 0:
			out = append(out, body[spans[id].off:spans[id].off+spans[id].n]...)
		}
	}
	return out, nil
}

// padOnly reports whether a field of a spec that pads its values holds
// nothing but padding in b: moov reads it as empty, and Respond leaves an
// empty field out. Fields without a pad are never read here.
func padOnly(f field.Field, b []byte) bool {
	if f.Spec().Pad == nil {
		return false
	}
	fi := field.NewInstanceOf(f)
	if _, err := fi.Unpack(b); err != nil {
		return false
	}
	v, err := fi.Bytes()
	return err == nil && len(v) == 0
}

// appendValue appends field f of value v, packed as moov packs it. An
// ASCII text field moov would pack with its default packer and no pad is
// appended in place: its encoding is the value itself, once checked to
// be ASCII as moov's encoder checks it.
func appendValue(out []byte, f field.Field, v string) ([]byte, error) {
	if spec := f.Spec(); spec.Enc == encoding.ASCII && spec.Packer == nil && spec.Pad == nil {
		if _, ok := f.(*field.String); ok && isASCII(v) {
			prefix, err := spec.Pref.EncodeLength(spec.Length, len(v))
			if err != nil {
				return out, err
			}
			return append(append(out, prefix...), v...), nil
		}
	}
	fi := field.NewInstanceOf(f)
	if err := fi.SetBytes([]byte(v)); err != nil {
		return out, err
	}
	packed, err := fi.Pack()
	if err != nil {
		return out, err
	}
	return append(out, packed...), nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] > 127 {
			return false
		}
	}
	return true
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
