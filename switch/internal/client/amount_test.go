package client

import "testing"

func TestParseAmount(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"100", 10000, true},
		{"100.5", 10050, true},
		{"100.50", 10050, true},
		{" 0.01 ", 1, true},
		{"9999999999.99", 999_999_999_999, true},
		{"10000000000.00", 0, false}, // too large
		{"100.", 0, false},
		{".5", 0, false},
		{"1.005", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"1e3", 0, false},
		{"", 0, false},
	} {
		got, err := ParseAmount(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseAmount(%q) = %d, %v; want %d (ok %v)", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestFormatAmount(t *testing.T) {
	for n, want := range map[int64]string{0: "0.00", 1: "0.01", 10050: "100.50", -250: "-2.50"} {
		if got := FormatAmount(n); got != want {
			t.Errorf("FormatAmount(%d) = %q, want %q", n, got, want)
		}
	}
}
