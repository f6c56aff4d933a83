package iso

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/moov-io/iso8583"
)

// Class is what a message asks for, read from its MTI (class and function).
type Class int

// Message classes the issuer side answers.
const (
	ClassUnknown             Class = iota
	ClassNetwork                   // 0800
	ClassAuthorization             // 0100
	ClassAuthorizationAdvice       // 0120
	ClassFinancial                 // 0200
	ClassFinancialAdvice           // 0220
	ClassReversal                  // 0400
	ClassReversalAdvice            // 0420
)

var classNames = [...]string{"unknown", "network", "authorization", "authorization advice", "financial", "financial advice", "reversal", "reversal advice"}

func (c Class) String() string {
	if c < 0 || int(c) >= len(classNames) {
		return "unknown"
	}
	return classNames[c]
}

// IsAdvice reports whether the acquirer has already acted and the issuer
// may only record the message (completions, advices, reversal advices).
func (c Class) IsAdvice() bool {
	return c == ClassAuthorizationAdvice || c == ClassFinancialAdvice || c == ClassReversalAdvice
}

// IsReversal reports whether the message undoes an earlier one.
func (c Class) IsReversal() bool { return c == ClassReversal || c == ClassReversalAdvice }

// Transaction types (the first two digits of DE3).
const (
	TxnPurchase = "00"
	TxnCash     = "01"
	TxnRefund   = "20"
	TxnDeposit  = "21"
	TxnBalance  = "31"
)

// ErrFormat marks a request that cannot be understood (response code 30).
var ErrFormat = errors.New("iso: format error")

// FieldError says which data element made a request unreadable.
type FieldError struct {
	Field  int
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("iso: format error in DE%d: %s", e.Field, e.Reason)
}

func (e *FieldError) Unwrap() error { return ErrFormat }

// Original is DE90, the original data elements of a reversed message.
type Original struct {
	MTI         string
	STAN        string
	Transmitted string // MMDDhhmmss
	Acquirer    string // leading zeros removed
	Forwarder   string // leading zeros removed
}

// Request is the typed view of an issuer-bound message.
type Request struct {
	MTI    string
	Class  Class
	Repeat bool // x01, x21: a repeat of a message that may have been lost

	PAN         string
	TxnType     string // first two digits of DE3
	Processing  string // DE3
	Amount      int64  // DE4, minor units
	Currency    string // DE49, empty when absent
	Transmitted string // DE7
	STAN        string // DE11
	LocalTime   string // DE12
	LocalDate   string // DE13
	Expiry      string // DE14, YYMM
	Settlement  string // DE15, MMDD: the business date the acquirer settles it on
	Acquirer    string // DE32 with leading zeros removed
	RRN         string // DE37
	AuthCode    string // DE38
	Terminal    string // DE41
	Merchant    string // DE42
	NetworkCode string // DE70
	Original    *Original
	// Actual is DE95's actual transaction amount: for a partial reversal,
	// the part of the original that stands. Nil when DE95 is absent.
	Actual *int64

	// Received is when the switch read the message (not on the wire: set
	// by who reads it); zero when unknown.
	Received time.Time
	// Keyed is Fingerprint as whoever stores it keys it, when it has been
	// worked out once (set by who reads the message); nil otherwise.
	Keyed []byte
}

// MTIClass is the MTI without its repeat digit ("010" for 0100 and 0101):
// a repeat shares its original's idempotency key.
func (r *Request) MTIClass() string { return mtiClass(r.MTI) }

func mtiClass(mti string) string { return mti[:3] }

// ClassOf returns the class of an MTI and whether it is a repeat.
func ClassOf(mti string) (Class, bool) {
	if !isDigits(mti, 4) || mti[0] != '0' {
		return ClassUnknown, false
	}
	repeat := mti[3] == '1'
	if mti[3] != '0' && !repeat {
		return ClassUnknown, false
	}
	switch mti[1:3] {
	case "80":
		return ClassNetwork, repeat
	case "10":
		return ClassAuthorization, repeat
	case "12":
		return ClassAuthorizationAdvice, repeat
	case "20":
		return ClassFinancial, repeat
	case "22":
		return ClassFinancialAdvice, repeat
	case "40":
		return ClassReversal, repeat
	case "42":
		return ClassReversalAdvice, repeat
	}
	return ClassUnknown, repeat
}

// ResponseMTI returns the MTI answering a request MTI: 0100 and 0101 are
// answered with 0110. It reports false for an MTI that is not a request.
func ResponseMTI(mti string) (string, bool) {
	if !isDigits(mti, 4) {
		return "", false
	}
	switch mti[2] {
	case '0', '2', '4':
	default:
		return "", false
	}
	if mti[3] != '0' && mti[3] != '1' {
		return "", false
	}
	return mti[:2] + string(mti[2]+1) + "0", true
}

// ParseRequest maps an unpacked message to a Request. Any error wraps
// ErrFormat and, where one field is at fault, is a *FieldError.
func ParseRequest(m *iso8583.Message) (*Request, error) {
	g := getter{m: m}
	r := &Request{MTI: g.str(0)}
	var repeat bool
	r.Class, repeat = ClassOf(r.MTI)
	r.Repeat = repeat
	if r.Class == ClassUnknown {
		return r, &FieldError{0, fmt.Sprintf("MTI %q is not a request the issuer answers", r.MTI)}
	}
	r.Transmitted = g.str(7)
	r.STAN = g.str(11)
	r.LocalTime = g.str(12)
	r.LocalDate = g.str(13)
	r.Expiry = g.str(14)
	r.Settlement = g.str(15)
	r.Acquirer = trimZeros(g.str(32))
	r.RRN = g.str(37)
	r.AuthCode = g.str(38)
	r.Terminal = g.str(41)
	r.Merchant = g.str(42)
	r.Currency = g.str(49)
	r.NetworkCode = g.str(70)
	if g.err != nil {
		return r, g.err
	}
	if err := r.checkCommon(); err != nil {
		return r, err
	}
	if r.Class == ClassNetwork {
		if !isDigits(r.NetworkCode, 3) {
			return r, &FieldError{70, "network management code must be 3 digits"}
		}
		return r, nil
	}
	r.PAN = g.str(2)
	r.Processing = g.str(3)
	amount := g.str(4)
	de90 := g.str(90)
	de95 := g.str(95)
	if g.err != nil {
		return r, g.err
	}
	if err := r.checkCard(amount); err != nil {
		return r, err
	}
	if de90 != "" {
		o, err := parseOriginal(de90)
		if err != nil {
			return r, err
		}
		r.Original = o
	}
	if de95 != "" {
		if len(de95) < 12 || !isDigits(de95[:12], 12) {
			return r, &FieldError{95, "replacement amounts must start with 12 digits"}
		}
		actual, _ := strconv.ParseInt(de95[:12], 10, 64)
		r.Actual = &actual
	}
	return r, nil
}

func (r *Request) checkCommon() error {
	if !isDigits(r.STAN, 6) {
		return &FieldError{11, "STAN must be 6 digits"}
	}
	if r.Transmitted != "" && !validMMDDhhmmss(r.Transmitted) {
		return &FieldError{7, "transmission date and time must be a valid MMDDhhmmss"}
	}
	if r.LocalTime != "" && !validHHMMSS(r.LocalTime) {
		return &FieldError{12, "local time must be a valid hhmmss"}
	}
	if r.LocalDate != "" && !validMMDD(r.LocalDate) {
		return &FieldError{13, "local date must be a valid MMDD"}
	}
	if r.Settlement != "" && !validMMDD(r.Settlement) {
		return &FieldError{15, "settlement date must be a valid MMDD"}
	}
	if r.Currency != "" && !isDigits(r.Currency, 3) {
		return &FieldError{49, "currency must be an ISO 4217 numeric code"}
	}
	return nil
}

func (r *Request) checkCard(amount string) error {
	if r.PAN == "" {
		return &FieldError{2, "PAN is required"}
	}
	if !isDigits(r.PAN, len(r.PAN)) {
		return &FieldError{2, "PAN must be digits"}
	}
	if !isDigits(r.Processing, 6) {
		return &FieldError{3, "processing code must be 6 digits"}
	}
	r.TxnType = r.Processing[:2]
	switch {
	case amount == "" && r.TxnType == TxnBalance:
	case amount == "":
		return &FieldError{4, "amount is required"}
	case !isDigits(amount, 12):
		return &FieldError{4, "amount must be 12 digits"}
	default:
		r.Amount, _ = strconv.ParseInt(amount, 10, 64)
	}
	if r.Expiry != "" && (!isDigits(r.Expiry, 4) || !validMonth(r.Expiry[2:])) {
		return &FieldError{14, "expiry date must be a valid YYMM"}
	}
	return nil
}

// parseOriginal reads DE90: original MTI (4), STAN (6), transmission date
// and time (10), acquiring institution (11), forwarding institution (11).
func parseOriginal(s string) (*Original, error) {
	if len(s) != 42 || !isDigits(s, 42) {
		return nil, &FieldError{90, "original data elements must be 42 digits"}
	}
	o := &Original{
		MTI:         s[0:4],
		STAN:        s[4:10],
		Transmitted: s[10:20],
		Acquirer:    trimZeros(s[20:31]),
		Forwarder:   trimZeros(s[31:42]),
	}
	// Only an authorisation or a financial message (or their advices)
	// can be an original: a reversal is never reversed or completed.
	switch c, _ := ClassOf(o.MTI); c {
	case ClassAuthorization, ClassAuthorizationAdvice, ClassFinancial, ClassFinancialAdvice:
	default:
		return nil, &FieldError{90, fmt.Sprintf("original MTI %s is not an authorisation or financial message", o.MTI)}
	}
	return o, nil
}

// Fingerprint is a digest of what a request asks to be done with money.
// Two messages with one idempotency key but different fingerprints are
// not the same request (response code 94).
func (r *Request) Fingerprint() []byte {
	h := sha256.New()
	actual := ""
	if r.Actual != nil {
		actual = strconv.FormatInt(*r.Actual, 10)
	}
	orig := ""
	if o := r.Original; o != nil {
		orig = strings.Join([]string{o.MTI, o.STAN, o.Transmitted, o.Acquirer}, "/")
	}
	for _, s := range []string{r.PAN, r.Processing, strconv.FormatInt(r.Amount, 10), r.Currency, r.RRN, orig, actual} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return h.Sum(nil)
}

// getter reads string fields, remembering the first error. moov's GetString
// returns "" for a field that is absent, so no field is dereferenced here.
type getter struct {
	m   *iso8583.Message
	err error
}

func (g *getter) str(id int) string {
	if g.err != nil {
		return ""
	}
	s, err := g.m.GetString(id)
	if err != nil {
		g.err = &FieldError{id, "unreadable"}
	}
	return s
}

func trimZeros(s string) string {
	t := strings.TrimLeft(s, "0")
	if t == "" && s != "" {
		return "0"
	}
	return t
}

func isDigits(s string, n int) bool {
	if len(s) != n || n == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func atoi2(s string) int { return int(s[0]-'0')*10 + int(s[1]-'0') }

func validMonth(mm string) bool { m := atoi2(mm); return m >= 1 && m <= 12 }

var daysIn = [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

func validMMDD(s string) bool {
	if !isDigits(s, 4) || !validMonth(s[:2]) {
		return false
	}
	d := atoi2(s[2:])
	return d >= 1 && d <= daysIn[atoi2(s[:2])]
}

func validHHMMSS(s string) bool {
	return isDigits(s, 6) && atoi2(s[:2]) < 24 && atoi2(s[2:4]) < 60 && atoi2(s[4:]) < 60
}

func validMMDDhhmmss(s string) bool {
	return isDigits(s, 10) && validMMDD(s[:4]) && validHHMMSS(s[4:])
}
