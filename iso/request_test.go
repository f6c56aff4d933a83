package iso

import (
	"errors"
	"testing"
)

func msg(t *testing.T, mti string, fields map[int]string) *Request {
	t.Helper()
	d, err := Builtin(DefaultDialect)
	if err != nil {
		t.Fatal(err)
	}
	m := d.NewMessage()
	m.MTI(mti)
	for id, v := range fields {
		if err := m.Field(id, v); err != nil {
			t.Fatal(err)
		}
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	u, err := d.Unpack(b)
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseRequest(u)
	if err != nil {
		var fe *FieldError
		if !errors.As(err, &fe) || !errors.Is(err, ErrFormat) {
			t.Fatalf("error %v is not a FieldError wrapping ErrFormat", err)
		}
		return nil
	}
	return r
}

func base(over map[int]string) map[int]string {
	f := map[int]string{2: "6228480000000001", 3: "000000", 4: "000000012345", 7: "1125101010", 11: "000123",
		12: "101010", 13: "1125", 32: "00001234", 37: "RRN000000001", 41: "TERM0001", 49: "156"}
	for k, v := range over {
		if v == "" {
			delete(f, k)
		} else {
			f[k] = v
		}
	}
	return f
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name   string
		mti    string
		fields map[int]string
		check  func(t *testing.T, r *Request)
	}{
		{"purchase", "0200", base(nil), func(t *testing.T, r *Request) {
			if r.Class != ClassFinancial || r.Repeat || r.TxnType != TxnPurchase || r.Amount != 12345 ||
				r.Acquirer != "1234" || r.MTIClass() != "020" || r.Currency != "156" {
				t.Fatalf("%+v", r)
			}
		}},
		{"repeat authorisation", "0101", base(map[int]string{3: "010000"}), func(t *testing.T, r *Request) {
			if r.Class != ClassAuthorization || !r.Repeat || r.TxnType != TxnCash || r.MTIClass() != "010" {
				t.Fatalf("%+v", r)
			}
		}},
		{"balance inquiry without amount", "0100", base(map[int]string{3: "310000", 4: ""}), func(t *testing.T, r *Request) {
			if r.TxnType != TxnBalance || r.Amount != 0 {
				t.Fatalf("%+v", r)
			}
		}},
		{"reversal with DE90 and DE95", "0420", base(map[int]string{
			90: "020000012311251010100000000123400000000000",
			95: "000000002000000000002000C00000000C00000000"}), func(t *testing.T, r *Request) {
			o := r.Original
			if r.Class != ClassReversalAdvice || o == nil || o.MTI != "0200" || o.STAN != "000123" ||
				o.Transmitted != "1125101010" || o.Acquirer != "1234" || r.Actual == nil || *r.Actual != 2000 {
				t.Fatalf("%+v %+v", r, o)
			}
		}},
		{"echo", "0800", map[int]string{7: "1125101010", 11: "000001", 70: "301"}, func(t *testing.T, r *Request) {
			if r.Class != ClassNetwork || r.NetworkCode != "301" {
				t.Fatalf("%+v", r)
			}
		}},
		{"completion", "0220", base(nil), func(t *testing.T, r *Request) {
			if r.Class != ClassFinancialAdvice || !r.Class.IsAdvice() {
				t.Fatalf("%+v", r)
			}
		}},
		{"acquirer of zeros", "0200", base(map[int]string{32: "000"}), func(t *testing.T, r *Request) {
			if r.Acquirer != "0" {
				t.Fatalf("acquirer %q", r.Acquirer)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := msg(t, tc.mti, tc.fields)
			if r == nil {
				t.Fatal("refused")
			}
			tc.check(t, r)
		})
	}
}

func TestParseRequestRefuses(t *testing.T) {
	tests := []struct {
		name   string
		mti    string
		fields map[int]string
	}{
		{"response MTI", "0210", base(nil)},
		{"unknown class", "0300", base(nil)},
		{"no PAN", "0200", base(map[int]string{2: ""})},
		{"letters in PAN", "0200", base(map[int]string{2: "62284800000000AB"})},
		{"processing code with letters", "0200", base(map[int]string{3: "00AB00"})},
		{"no amount", "0200", base(map[int]string{4: ""})},
		{"amount with letters", "0200", base(map[int]string{4: "00000000012A"})},
		{"no STAN", "0200", base(map[int]string{11: ""})},
		{"bad transmission time", "0200", base(map[int]string{7: "1332101010"})},
		{"31 February", "0200", base(map[int]string{13: "0231"})},
		{"hour 24", "0200", base(map[int]string{12: "240000"})},
		{"month 13 expiry", "0200", base(map[int]string{14: "2613"})},
		{"currency letters", "0200", base(map[int]string{49: "CNY"})},
		{"DE90 with letters", "0400", base(map[int]string{90: "0200000123112510101000000001234000000000XX"})},
		{"DE90 of a network message", "0400", base(map[int]string{90: "080000012311251010100000000123400000000000"})},
		{"DE95 not digits", "0400", base(map[int]string{95: "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEF"})},
		{"echo without DE70", "0800", map[int]string{11: "000001"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r := msg(t, tc.mti, tc.fields); r != nil {
				t.Fatalf("accepted: %+v", r)
			}
		})
	}
}

func TestResponseMTI(t *testing.T) {
	for in, want := range map[string]string{"0100": "0110", "0101": "0110", "0120": "0130", "0121": "0130", "0200": "0210",
		"0220": "0230", "0400": "0410", "0421": "0430", "0800": "0810"} {
		if got, ok := ResponseMTI(in); !ok || got != want {
			t.Errorf("ResponseMTI(%s) = %s, %v; want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"0110", "0130", "0810", "01", "abcd", "0105"} {
		if _, ok := ResponseMTI(in); ok {
			t.Errorf("ResponseMTI(%s) answered", in)
		}
	}
}

func TestFingerprint(t *testing.T) {
	a := msg(t, "0200", base(nil))
	b := msg(t, "0201", base(nil))
	c := msg(t, "0200", base(map[int]string{4: "000000012346"}))
	if string(a.Fingerprint()) != string(b.Fingerprint()) {
		t.Error("a repeat has another fingerprint")
	}
	if string(a.Fingerprint()) == string(c.Fingerprint()) {
		t.Error("another amount has the same fingerprint")
	}
}

func TestBalancesRoundTrip(t *testing.T) {
	in := []Balance{{"10", "01", "156", 12345}, {"10", "02", "156", -5}, {"91", "01", "156", 0}}
	s := FormatBalances(in)
	if s != "1001156C0000000123451002156D0000000000059101156C000000000000" {
		t.Fatalf("DE54 %q", s)
	}
	out, err := ParseBalances(s)
	if err != nil || len(out) != 3 || out[1] != in[1] {
		t.Fatalf("%v %v", out, err)
	}
	for _, bad := range []string{"1001156C00000012345", "1001156X000000012345", "1001156C00000001234A"} {
		if _, err := ParseBalances(bad); err == nil {
			t.Errorf("ParseBalances(%q) accepted", bad)
		}
	}
}

func TestMaskPAN(t *testing.T) {
	for in, want := range map[string]string{
		"6228480000000001":    "622848******0001",
		"6228480000000000001": "622848*********0001",
		"1234567890":          "******7890",
		"12345":               "*****",
		"":                    "",
	} {
		if got := MaskPAN(in); got != want {
			t.Errorf("MaskPAN(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestMaskPANs(t *testing.T) {
	for in, want := range map[string]string{
		"/v1/cards/6228480000000001/nope":    "/v1/cards/622848******0001/nope",
		`json: unknown field "622848000001"`: `json: unknown field "********0001"`,
		"a6228480000000000001b 12345678901":  "a622848*********0001b 12345678901",
		"62284800000000000012345":            "622848*************2345",
		"crd_0123456789abcdef01234567":       "crd_0123456789abcdef01234567",
		"order R20261201abcdef":              "order R20261201abcdef",
		"":                                   "",
	} {
		if got := MaskPANs(in); got != want {
			t.Errorf("MaskPANs(%q) = %q, want %q", in, got, want)
		}
	}
}
