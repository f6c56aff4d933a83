package iso

import (
	"bytes"
	"strings"
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

// replyValues are the fields a decision sets in a response.
var replyValues = []Value{{38, "A1B2C3"}, {39, "00"}, {54, FormatBalances([]Balance{{AccountCard, AmountLedger, "156", 12345}})}}

// checkReply holds Reply to what Respond, Field and Pack make of the same
// request: the same bytes, or, where moov writes a value back other than
// the bank wrote it, the same fields. A request moov cannot pack back may
// still be replied to, as the bank wrote it.
func checkReply(t *testing.T, d *Dialect, body []byte, req *iso8583.Message) {
	t.Helper()
	got, gerr := d.Reply(body, req, replyValues)
	resp, err := Respond(d, req)
	if err != nil {
		if gerr == nil {
			t.Fatalf("%s: Reply answered a request Respond refuses (%v)", d.Name, err)
		}
		return
	}
	for _, v := range replyValues {
		if err := resp.Field(v.ID, v.Value); err != nil {
			t.Fatal(err)
		}
	}
	want, err := resp.Pack()
	if err != nil {
		return
	}
	if gerr != nil {
		t.Fatalf("%s: Reply: %v", d.Name, gerr)
	}
	if bytes.Equal(got, want) {
		return
	}
	a, err := d.Unpack(got)
	if err != nil {
		t.Fatalf("%s: a reply does not unpack: %v\n%q", d.Name, err, got)
	}
	b, _ := d.Unpack(want)
	af, bf := a.GetFields(), b.GetFields()
	if len(af) != len(bf) {
		t.Fatalf("%s: reply has %d fields, the packed response %d\n%q\n%q", d.Name, len(af), len(bf), got, want)
	}
	for id := range bf {
		x, _ := a.GetString(id)
		y, _ := b.GetString(id)
		if x != y {
			t.Fatalf("%s: DE%d replied %q, packed %q", d.Name, id, x, y)
		}
	}
}

// TestReplyIsTheResponse: for every captured request and for requests
// with secondary-bitmap fields and empty LLVARs, in each shipped dialect,
// Reply answers as the message-built response does.
func TestReplyIsTheResponse(t *testing.T) {
	n := 0
	for _, f := range loadHexFixtures(t) {
		d, err := Builtin(f.dialect())
		if err != nil {
			t.Fatal(err)
		}
		m, err := d.Unpack(f.body)
		if err != nil {
			continue
		}
		if mti, _ := m.GetMTI(); len(mti) == 4 && mti[2]%2 == 0 {
			checkReply(t, d, f.body, m)
			n++
		}
	}
	if n == 0 {
		t.Fatal("no captured request to reply to")
	}
	for _, d := range builtinDialects(t) {
		resp := replyTo(t, d, "0420", map[int]string{2: "", 3: "000000", 4: "000000010000", 7: "1125101010", 11: "000002",
			32: "1234", 37: "000000000002", 38: "OLDONE", 41: "ATM00001", 49: "156", 90: "020000000100112510101000000012340000000000"})
		if mti, _ := resp.GetMTI(); mti != "0430" {
			t.Fatalf("%s: MTI %s", d.Name, mti)
		}
		if id, ok := emptyField(resp); ok {
			t.Fatalf("%s: DE%d echoed empty", d.Name, id)
		}
		if s, _ := resp.GetString(90); s == "" {
			t.Fatalf("%s: DE90 not echoed", d.Name)
		}
		if s, _ := resp.GetString(38); s != "A1B2C3" {
			t.Fatalf("%s: DE38 %q: a value set replaces the request's own", d.Name, s)
		}
	}
	d, _ := Builtin(DefaultDialect)
	req := d.NewMessage()
	req.MTI("0200")
	_ = req.Field(11, "000001")
	body, _ := req.Pack()
	req, _ = d.Unpack(body)
	for _, bad := range [][]Value{{{39, "00"}, {38, "X"}}, {{1, "x"}}, {{39, "000"}}} {
		if _, err := d.Reply(body, req, bad); err == nil {
			t.Fatalf("%v: replied", bad)
		}
	}
}

// TestReplyLeavesOutPaddingOnly: in a dialect that pads DE41 and DE42
// with spaces, a request that sends them blank gets them left out, as
// Respond leaves out a field it reads as empty; padded values are echoed
// as sent.
func TestReplyLeavesOutPaddingOnly(t *testing.T) {
	d := variantDialect(t, "padded", map[string]string{
		"41": `{"type":"String","length":8,"enc":"ASCII","prefix":"ASCII.Fixed","padding":{"type":"Right","pad":" "}}`,
		"42": `{"type":"String","length":15,"enc":"ASCII","prefix":"ASCII.Fixed","padding":{"type":"Right","pad":" "}}`,
	})
	resp := replyTo(t, d, "0200", map[int]string{3: "000000", 4: "000000010000", 7: "1125101010", 11: "000002", 41: " ", 42: "M1", 49: "156"})
	if _, err := resp.GetString(41); resp.GetFields()[41] != nil {
		t.Errorf("DE41 of padding only echoed (%v)", err)
	}
	if s, _ := resp.GetString(42); strings.TrimSpace(s) != "M1" {
		t.Errorf("DE42 %q", s)
	}
}

// replyTo packs a request of fields, unpacks it as a bank's would arrive,
// checks Reply against the message-built response and returns the reply
// unpacked.
func replyTo(t *testing.T, d *Dialect, mti string, fields map[int]string) *iso8583.Message {
	t.Helper()
	req := d.NewMessage()
	req.MTI(mti)
	for id, v := range fields {
		if err := d.SetField(req, id, v); err != nil {
			t.Fatal(err)
		}
	}
	body, err := req.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if req, err = d.Unpack(body); err != nil {
		t.Fatal(err)
	}
	checkReply(t, d, body, req)
	got, err := d.Reply(body, req, replyValues)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := d.Unpack(got)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
