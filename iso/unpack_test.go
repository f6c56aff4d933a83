package iso

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/moov-io/iso8583"
)

// variantDialect is the default dialect with some fields defined anew, as
// a bank's JSON spec would: over maps a field number to its JSON.
func variantDialect(t *testing.T, name string, over map[string]string) *Dialect {
	t.Helper()
	raw, err := BuiltinJSON(DefaultDialect)
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Name   string                     `json:"name"`
		Fields map[string]json.RawMessage `json:"fields"`
	}
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	spec.Name = name
	for id, f := range over {
		spec.Fields[id] = json.RawMessage(f)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	d, err := LoadDialect(name, b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// measureCase is a message of a dialect: its fields as text (binary ones
// in hex), and raw ones (composites, hex fields) as their bytes.
type measureCase struct {
	name   string
	d      *Dialect
	fields map[int]string
	raw    map[int]string
	edit   func([]byte) []byte // what a bank writes differently, after packing
	read   *Dialect            // when not d: the dialect that reads what d packed
}

func measureCases(t *testing.T) []measureCase {
	ascii, _ := Builtin(DefaultDialect)
	binbitmap, _ := Builtin("iso87-ascii-binbitmap")
	request := map[int]string{2: "6228480000000202", 3: "000000", 4: "000000010000", 7: "1125101010", 11: "123456",
		12: "101010", 13: "1125", 32: "1234", 37: "000000000001", 41: "ATM00001", 42: "MERCHANT0000001", 49: "156"}
	with := func(extra map[int]string) map[int]string {
		out := map[int]string{}
		for k, v := range request {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		return out
	}
	bcd := variantDialect(t, "bcd", map[string]string{
		"0":   `{"type":"String","length":4,"enc":"BCD","prefix":"BCD.Fixed"}`,
		"1":   `{"type":"Bitmap","length":8,"enc":"Binary","prefix":"Binary.Fixed"}`,
		"2":   `{"type":"String","length":19,"enc":"BCD","prefix":"BCD.LL"}`,
		"3":   `{"type":"String","length":6,"enc":"BCD","prefix":"BCD.Fixed"}`,
		"4":   `{"type":"String","length":12,"enc":"BCD","prefix":"BCD.Fixed"}`,
		"11":  `{"type":"Numeric","length":6,"enc":"BCD","prefix":"BCD.Fixed","padding":{"type":"Left","pad":"0"}}`,
		"14":  `{"type":"String","length":3,"enc":"LBCD","prefix":"BCD.Fixed"}`,
		"32":  `{"type":"String","length":11,"enc":"BCD","prefix":"BCD.LL"}`,
		"41":  `{"type":"String","length":8,"enc":"EBCDIC","prefix":"EBCDIC.Fixed"}`,
		"54":  `{"type":"String","length":120,"enc":"ASCII","prefix":"Binary.LLL"}`,
		"102": `{"type":"String","length":28,"enc":"ASCII","prefix":"Binary.LL"}`,
		"127": `{"type":"String","length":999,"enc":"ASCII","prefix":"BCD.LLL"}`,
	})
	ebcdic := variantDialect(t, "ebcdic", map[string]string{
		"0":   `{"type":"String","length":4,"enc":"EBCDIC","prefix":"EBCDIC.Fixed"}`,
		"1":   `{"type":"Bitmap","length":8,"enc":"Binary","prefix":"Binary.Fixed"}`,
		"2":   `{"type":"String","length":19,"enc":"EBCDIC","prefix":"EBCDIC.LL"}`,
		"3":   `{"type":"String","length":6,"enc":"EBCDIC1047","prefix":"EBCDIC.Fixed"}`,
		"48":  `{"type":"String","length":999,"enc":"EBCDIC","prefix":"EBCDIC.LLL"}`,
		"70":  `{"type":"String","length":3,"enc":"EBCDIC","prefix":"EBCDIC.Fixed"}`,
		"120": `{"type":"String","length":9999,"enc":"EBCDIC","prefix":"EBCDIC.LLLL"}`,
	})
	hexes := variantDialect(t, "hex", map[string]string{
		"2":  `{"type":"String","length":19,"enc":"HexToASCII","prefix":"Hex.LL"}`,
		"35": `{"type":"Track2","length":37,"enc":"ASCII","prefix":"ASCII.LL"}`,
		"52": `{"type":"Binary","length":8,"enc":"Binary","prefix":"Binary.Fixed"}`,
		"55": `{"type":"Binary","length":255,"enc":"Binary","prefix":"Binary.LLL"}`,
		"62": `{"type":"Hex","length":8,"enc":"Binary","prefix":"Binary.LL"}`,
	})
	composite := variantDialect(t, "composite", map[string]string{
		"48": `{"type":"Composite","length":999,"prefix":"ASCII.LLL",
			"tag":{"length":2,"enc":"ASCII","padding":{"type":"Left","pad":"0"},"sort":"StringsByInt"},
			"subfields":{
				"1":{"type":"String","length":20,"enc":"ASCII","prefix":"ASCII.LL"},
				"2":{"type":"String","length":3,"enc":"ASCII","prefix":"ASCII.Fixed"}}}`,
		"55": `{"type":"Composite","length":255,"prefix":"Binary.LLL",
			"tag":{"enc":"BerTLVTag","sort":"StringsByHex"},
			"subfields":{
				"82":{"type":"Binary","length":2,"enc":"Binary","prefix":"BerTLV"},
				"9F02":{"type":"Binary","length":6,"enc":"Binary","prefix":"BerTLV"}}}`,
		"90": `{"type":"Composite","length":42,"prefix":"ASCII.Fixed","tag":{"sort":"StringsByInt"},
			"subfields":{
				"1":{"type":"String","length":4,"enc":"ASCII","prefix":"ASCII.Fixed"},
				"2":{"type":"String","length":6,"enc":"ASCII","prefix":"ASCII.Fixed"},
				"3":{"type":"String","length":10,"enc":"ASCII","prefix":"ASCII.Fixed"},
				"4":{"type":"String","length":11,"enc":"ASCII","prefix":"ASCII.Fixed"},
				"5":{"type":"String","length":11,"enc":"ASCII","prefix":"ASCII.Fixed"}}}`,
		"127": `{"type":"Composite","length":999,"prefix":"ASCII.LLL",
			"bitmap":{"type":"Bitmap","length":8,"enc":"HexToASCII","prefix":"Hex.Fixed","disableAutoExpand":true},
			"subfields":{
				"2":{"type":"String","length":32,"enc":"ASCII","prefix":"ASCII.LL"},
				"3":{"type":"String","length":48,"enc":"ASCII","prefix":"ASCII.Fixed"}}}`,
	})
	asciiToHex := variantDialect(t, "ascii-to-hex", map[string]string{
		"52": `{"type":"String","length":16,"enc":"ASCIIToHex","prefix":"ASCII.Fixed"}`,
	})
	return []measureCase{
		{name: "ascii 0800", d: ascii, fields: map[int]string{7: "1125101010", 11: "000001", 70: "301"}},
		{name: "ascii 0200", d: ascii, fields: with(nil)},
		{name: "ascii secondary bitmap and DE128", d: ascii, fields: with(map[int]string{90: strings.Repeat("0", 42), 127: "x", 128: "0102030405060708"})},
		{name: "binary bitmap", d: binbitmap, fields: with(map[int]string{64: "0102030405060708", 102: "ACCOUNT"})},
		{name: "bcd, binary and ebcdic", d: bcd, fields: with(map[int]string{2: "6228480000000000011", 14: "251", 32: "12345",
			54: strings.Repeat("1001156C000000001000", 2), 102: "ACCOUNT 1", 127: strings.Repeat("p", 300)})},
		{name: "ebcdic", d: ebcdic, fields: with(map[int]string{48: "private data", 70: "301", 120: strings.Repeat("e", 1200)})},
		{name: "hex and tracks", d: hexes, fields: with(map[int]string{35: "6228480000000202=2512101123400001230",
			52: "0102030405060708", 55: "9f02060000000010005f2a020156"}), raw: map[int]string{62: "\xa1\xb2\xc3"}},
		{name: "hex read as bytes", d: ascii, read: asciiToHex, fields: with(map[int]string{52: "0102030405060708", 70: "301"})},
		{name: "composites", d: composite, fields: request, raw: map[int]string{
			48:  "0105hello02abc",
			55:  "\x82\x02\x19\x80\x9f\x02\x06\x00\x00\x00\x01\x00\x00",
			90:  "020012345611251010100000000123400000000000",
			127: "6000000000000000" + "05hello" + strings.Repeat("z", 48),
		}},
		{name: "empty variable composite", d: composite, fields: request, raw: map[int]string{127: "4000000000000000" + "01z"},
			edit: func(b []byte) []byte { return append(b[:len(b)-len("0194000000000000000"+"01z")], "000"...) }},
	}
}

func (c measureCase) pack(t *testing.T) []byte {
	t.Helper()
	m := c.d.NewMessage()
	m.MTI("0200")
	for id, v := range c.fields {
		if err := c.d.SetField(m, id, v); err != nil {
			t.Fatalf("DE%d: %v", id, err)
		}
	}
	for id, v := range c.raw {
		if err := m.BinaryField(id, []byte(v)); err != nil {
			t.Fatalf("DE%d: %v", id, err)
		}
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if c.edit != nil {
		b = c.edit(b)
	}
	return b
}

// TestUnpackMeasuresWhatMoovReads: for every kind of field, encoding and
// length prefix a bank's spec can name, a packed message is read whole
// and the same message with bytes after it is refused, with their count;
// and nothing shorter than the length measured unpacks.
func TestUnpackMeasuresWhatMoovReads(t *testing.T) {
	for _, c := range measureCases(t) {
		t.Run(c.name, func(t *testing.T) {
			body, d := c.pack(t), c.d
			if c.read != nil {
				d = c.read
			}
			m, err := d.Unpack(body)
			if err != nil {
				t.Fatalf("unpack: %v", err)
			}
			for id, want := range c.fields {
				if d != c.d {
					break
				}
				if got, _ := m.GetString(id); !strings.EqualFold(got, want) {
					t.Errorf("DE%d = %q, want %q", id, got, want)
				}
			}
			checkMeasured(t, d, body)
			for _, extra := range [][]byte{{0}, []byte("0000"), bytes.Repeat([]byte("9"), 300)} {
				long := append(append([]byte(nil), body...), extra...)
				_, err := d.Unpack(long)
				if !errors.Is(err, ErrTrailingBytes) {
					t.Fatalf("%d bytes after the message: %v", len(extra), err)
				}
				if want := fmt.Sprintf("%d after DE", len(extra)); !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not say %q", err, want)
				}
				checkMeasured(t, d, long)
			}
		})
	}
}

// checkMeasured holds bodyLength to moov's own reading of body: moov
// ignores what follows a message, so the message's length is the
// shortest prefix of body that unpacks.
func checkMeasured(t *testing.T, d *Dialect, body []byte) {
	t.Helper()
	m := iso8583.NewMessage(d.Spec)
	if m.Unpack(body) != nil {
		return
	}
	n, _, err := bodyLength(d.Spec, m.Bitmap(), body)
	if err != nil {
		t.Fatalf("%s: measuring a message moov read: %v\n%q", d.Name, err, body)
	}
	if n > len(body) || n < 1 {
		t.Fatalf("%s: measured %d bytes of %d", d.Name, n, len(body))
	}
	if err := iso8583.NewMessage(d.Spec).Unpack(body[:n]); err != nil {
		t.Fatalf("%s: the first %d bytes of %d, as measured, do not unpack: %v\n%q", d.Name, n, len(body), err, body)
	}
	if err := iso8583.NewMessage(d.Spec).Unpack(body[:n-1]); err == nil {
		t.Fatalf("%s: measured %d bytes, but %d unpack\n%q", d.Name, n, n-1, body)
	}
	_, err = d.Unpack(body)
	if whole := n == len(body); whole != (err == nil) || !whole && !errors.Is(err, ErrTrailingBytes) {
		t.Fatalf("%s: measured %d bytes of %d, Unpack says %v", d.Name, n, len(body), err)
	}
}

// TestUnpackRefusesTrailingBytes: an 0800 with stray bytes after DE70,
// and a Postilion-style 0200 whose DE127 has a six-digit length and a
// sub-bitmap, are refused in every shipped dialect, with what is left
// over.
func TestUnpackRefusesTrailingBytes(t *testing.T) {
	for _, d := range builtinDialects(t) {
		t.Run(d.Name, func(t *testing.T) {
			body := echoBody(t, d)
			if _, err := d.Unpack(body); err != nil {
				t.Fatalf("the 0800 itself: %v", err)
			}
			_, err := d.Unpack(append(body, "ABCD"...))
			if !errors.Is(err, ErrTrailingBytes) || !strings.Contains(err.Error(), "4 after DE70") {
				t.Fatalf("an 0800 with 4 stray bytes: %v", err)
			}
			m, err := d.Unpack(postilion0200(t, d))
			if !errors.Is(err, ErrTrailingBytes) {
				t.Fatalf("a six-digit DE127: %v", err)
			}
			if mti, _ := m.GetMTI(); mti != "0200" {
				t.Fatalf("MTI %q", mti)
			}
		})
	}
}

// postilion0200 is an 0200 debit as Postilion writes DE127: a six-digit
// length, then a bitmap of its subfields and the subfields.
func postilion0200(t testing.TB, d *Dialect) []byte {
	t.Helper()
	m := d.NewMessage()
	m.MTI("0200")
	for id, v := range map[int]string{2: "6228480000000202", 3: "000000", 4: "000000010000", 7: "1125101010", 11: "123456",
		12: "101010", 13: "1125", 32: "1234", 37: "000000000001", 41: "ATM00001", 42: "MERCHANT0000001", 49: "156",
		127: "x"} {
		_ = m.Field(id, v)
	}
	body, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	de127 := "4000000000000000" + "12" + "POSTILIONREF"
	cut := bytes.LastIndex(body, []byte("001x"))
	if cut < 0 || cut+4 != len(body) {
		t.Fatalf("DE127 is not last: %q", body)
	}
	return append(body[:cut], fmt.Sprintf("%06d%s", len(de127), de127)...)
}

// echoBody is an 0800 echo test.
func echoBody(t testing.TB, d *Dialect) []byte {
	t.Helper()
	m := d.NewMessage()
	m.MTI("0800")
	for id, v := range map[int]string{7: "1125101010", 11: "000001", 70: "301"} {
		_ = m.Field(id, v)
	}
	body, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// TestBodyLengthAllocatesNothing: measuring a message of a shipped
// dialect adds nothing to what unpacking it costs.
func TestBodyLengthAllocatesNothing(t *testing.T) {
	for _, d := range builtinDialects(t) {
		body := postilion0200(t, d)
		m := iso8583.NewMessage(d.Spec)
		if err := m.Unpack(body); err != nil {
			t.Fatal(err)
		}
		bm := m.Bitmap()
		if n := testing.AllocsPerRun(100, func() { _, _, _ = bodyLength(d.Spec, bm, body) }); n != 0 {
			t.Errorf("%s: %v allocations per message", d.Name, n)
		}
	}
}
