package config

import (
	"testing"
	"time"
)

// TestBusinessDate: a request belongs to its arrival's date in the
// cutover's zone, and from the cutover time on to the next date.
func TestBusinessDate(t *testing.T) {
	sh, _ := time.LoadLocation("Asia/Shanghai")
	for _, c := range []struct {
		cutover string
		at      time.Time
		want    string
	}{
		{"00:00", time.Date(2026, 12, 1, 23, 59, 0, 0, sh), "2026-12-01"},
		{"00:00", time.Date(2026, 12, 1, 16, 30, 0, 0, time.UTC), "2026-12-02"}, // 00:30 in Shanghai
		{"23:00", time.Date(2026, 12, 1, 22, 59, 59, 0, sh), "2026-12-01"},
		{"23:00", time.Date(2026, 12, 1, 23, 0, 0, 0, sh), "2026-12-02"},
		{"23:00", time.Date(2026, 12, 31, 23, 30, 0, 0, sh), "2027-01-01"},
	} {
		b := NewBank()
		b.Code, b.Listen, b.Cutover = "b", ":1", c.cutover
		if got := b.BusinessDate(c.at).Format(time.DateOnly); got != c.want {
			t.Errorf("cutover %s at %s: %s, want %s", c.cutover, c.at, got, c.want)
		}
	}
	b := NewBank()
	b.Code, b.Listen, b.Cutover, b.CutoverZone = "b", ":1", "25:00", "Mars/Olympus"
	if err := b.Validate(); err == nil {
		t.Fatal("a cutover of 25:00 in no zone was taken")
	}
}

// TestReconFormats: the builtin formats are valid, and a format naming
// unknown fields, missing required ones or mixing layouts is refused.
func TestReconFormats(t *testing.T) {
	for name, f := range BuiltinReconFormats() {
		if err := f.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, f := range []ReconFormat{
		{Source: "bank", Layout: "csv", Columns: []string{"acquirer", "terminal", "stan", "rrn", "transmitted", "amount"}},
		{Source: "bank", Layout: "csv", Columns: append(BankReconFields[:len(BankReconFields):len(BankReconFields)], "pan")},
		{Source: "bank", Layout: "fixed", Header: true, Fields: []FixedField{{"acquirer", 1, 11}}},
		{Source: "fund", Layout: "csv", Columns: FundReconFields, Encoding: "latin1"},
		{Source: "bank", Layout: "csv", Columns: BankReconFields, Delimiter: "\""},
		{Source: "fund", Layout: "fixed", Fields: []FixedField{{"order_id", 0, 10}}},
		{Source: "bank", Layout: "csv", Columns: BankReconFields, Delimiter: "\x00"},
		{Source: "fund", Layout: "fixed", Fields: []FixedField{{"order_id", 9223372036854775807, 10}}},
		{Source: "fund", Layout: "fixed", Fields: []FixedField{{"order_id", 1, 10}, {"kind", 5, 10}}},
	} {
		if err := f.Validate(); err == nil {
			t.Errorf("%+v was taken", f)
		}
	}
	kvs := map[string][]byte{"recon_formats/gbk-fixed": []byte(`{"source":"bank","layout":"fixed","encoding":"gbk","skip_lines":1,
		"fields":[{"name":"acquirer","start":1,"width":11},{"name":"terminal","start":12,"width":8},{"name":"stan","start":20,"width":6},
		{"name":"rrn","start":26,"width":12},{"name":"transmitted","start":38,"width":10},{"name":"amount","start":48,"width":12},
		{"name":"currency","start":60,"width":3}],"amount":"decimal"}`)}
	s, err := Build(1, kvs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := s.ReconFormats["gbk-fixed"]; !ok || f.Encoding != "gbk" || len(s.ReconFormats) != 3 {
		t.Fatalf("formats %+v", s.ReconFormats)
	}
}
