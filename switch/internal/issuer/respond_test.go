package issuer_test

import (
	"testing"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// TestNoEmptyFieldEchoed: over TCP, requests carrying empty LLVAR fields
// (DE2, DE32 of length 00) get answers without them, and with no field
// of no length at all: a 0200 without a PAN answered 30, an echo test
// answered 00.
func TestNoEmptyFieldEchoed(t *testing.T) {
	t.Parallel()
	srv, _ := switchtest.StartServer(t)
	raw := switchtest.DialRaw(t, srv.BankAddr("default").String())
	d, err := iso.Builtin(iso.DefaultDialect)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, mti string
		fields    map[int]string
		code      string
	}{
		{"0200 with an empty DE2", "0200", map[int]string{2: "", 3: "000000", 4: "000000010000", 7: "1125101010", 11: "000301",
			12: "101010", 13: "1125", 32: "", 37: "000000000301", 41: "ATM00001", 42: "MERCHANT0000001", 49: "156"}, "30"},
		{"0800 with an empty DE32", "0800", map[int]string{7: "1125101010", 11: "000302", 32: "", 70: "301"}, "00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := client.NewMessage(d, tc.mti, tc.fields)
			if err != nil {
				t.Fatal(err)
			}
			body, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			answer := raw.RoundTrip(t, body)
			resp, err := d.Unpack(answer)
			if err != nil {
				t.Fatalf("the answer does not unpack: %v", err)
			}
			got := switchtest.FieldsOf(t, resp)
			switchtest.WantCode(t, got, tc.code)
			for id, v := range got {
				if v == "" {
					t.Errorf("DE%d answered empty: %q", id, answer)
				}
			}
			for id, v := range tc.fields {
				if _, echoed := got[id]; v == "" && echoed {
					t.Errorf("DE%d echoed", id)
				}
			}
			if got[11] != tc.fields[11] {
				t.Errorf("DE11 %q, want the request's %q", got[11], tc.fields[11])
			}
		})
	}
}
