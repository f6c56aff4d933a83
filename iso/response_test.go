package iso

import (
	"testing"

	"github.com/moov-io/iso8583"
)

// emptyField returns a field of m whose value has no length, if any.
func emptyField(m *iso8583.Message) (int, bool) {
	for id := range m.GetFields() {
		if id < 2 {
			continue
		}
		if b, err := m.GetBytes(id); err == nil && len(b) == 0 {
			return id, true
		}
	}
	return 0, false
}

// TestRespondLeavesOutEmptyFields: a request's empty LLVAR fields (DE2
// and DE32 of length 00) are not echoed, in either shipped dialect, and
// the fields it carried with a value are.
func TestRespondLeavesOutEmptyFields(t *testing.T) {
	for _, d := range builtinDialects(t) {
		t.Run(d.Name, func(t *testing.T) {
			req := d.NewMessage()
			req.MTI("0200")
			for id, v := range map[int]string{2: "", 3: "000000", 4: "000000010000", 7: "1125101010", 11: "000002",
				32: "", 37: "000000000002", 41: "ATM00001", 49: "156"} {
				if err := d.SetField(req, id, v); err != nil {
					t.Fatal(err)
				}
			}
			body, err := req.Pack()
			if err != nil {
				t.Fatal(err)
			}
			req, err = d.Unpack(body)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := Respond(d, req)
			if err != nil {
				t.Fatal(err)
			}
			if err := resp.Field(39, "30"); err != nil {
				t.Fatal(err)
			}
			packed, err := resp.Pack()
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.Unpack(packed)
			if err != nil {
				t.Fatal(err)
			}
			if id, ok := emptyField(got); ok {
				t.Fatalf("DE%d echoed empty: %q", id, packed)
			}
			fields := got.GetFields()
			for _, id := range []int{2, 32} {
				if _, ok := fields[id]; ok {
					t.Errorf("DE%d echoed", id)
				}
			}
			for _, id := range []int{3, 4, 7, 11, 37, 41, 49} {
				a, _ := req.GetString(id)
				if b, _ := got.GetString(id); a != b {
					t.Errorf("DE%d echoed as %q, want %q", id, b, a)
				}
			}
		})
	}
}
