package recon

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/goldcard/goldcard/config"
)

const header = "acquirer,terminal,stan,rrn,transmitted,mti,processing_code,amount,currency,response_code\n"

func readAll(t *testing.T, f config.ReconFormat, bank *config.Bank, in io.Reader) (int, error) {
	t.Helper()
	rows := BankRows(f, bank, in)
	n := 0
	for rows.Next() {
		n++
	}
	return n, rows.Err()
}

func defaultBank() *config.Bank {
	b := config.DefaultBank(":0")
	return b
}

// TestBankRowsRefuseBadRows: each malformed field is refused with its
// line and field, and a good file is read whole.
func TestBankRowsRefuseBadRows(t *testing.T) {
	csv := config.BuiltinReconFormats()[config.DefaultBankFormat]
	good := "00001234,ATM00001,42,000000000042,1201101010,0200,000000,10000,156,00\n"
	n, err := readAll(t, csv, defaultBank(), strings.NewReader("\ufeff"+header+good+good))
	if err != nil || n != 2 {
		t.Fatalf("a good file: %d rows, %v", n, err)
	}
	rows := BankRows(csv, defaultBank(), strings.NewReader(header+good))
	if !rows.Next() || rows.Row().Acquirer != "1234" || rows.Row().STAN != "000042" || rows.Row().Line != 2 {
		t.Fatalf("row %+v", rows.Row())
	}
	for _, c := range []struct{ file, want string }{
		{"", "empty"},
		{"acquirer,terminal\n" + good, "line 1:"},
		{header + strings.Replace(good, "10000", "-5", 1), "line 2: amount"},
		{header + strings.Replace(good, "10000", "1e5", 1), "line 2: amount"},
		{header + strings.Replace(good, "00001234", "12a4", 1), "line 2: acquirer"},
		{header + strings.Replace(good, "1201101010", "1301101010", 1), "line 2: transmitted"},
		{header + strings.Replace(good, ",156,", ",CNY,", 1), "line 2: currency"},
		{header + good + "1234,ATM00001\n", "line 3: 2 fields; the format has 10"},
		{header + good + `1234,"ATM0` + "\n", "line 3"},
	} {
		_, err := readAll(t, csv, defaultBank(), strings.NewReader(c.file))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.file, err, c.want)
		}
	}
	b := defaultBank()
	b.Acquirers = []string{"1234"}
	other := strings.Replace(good, "00001234", "5678", 1)
	if _, err := readAll(t, csv, b, strings.NewReader(header+good+other)); err == nil || !strings.Contains(err.Error(), "line 3: acquirer") ||
		!strings.Contains(err.Error(), "another bank's file") {
		t.Errorf("another bank's row: %v", err)
	}
	long := header + strings.Repeat("x", MaxLine+1) + "\n"
	var le *LineError
	if _, err := readAll(t, csv, defaultBank(), strings.NewReader(long)); !errors.As(err, &le) || le.Line != 2 {
		t.Errorf("a line of %d bytes: %v", MaxLine+1, err)
	}
}

// TestFixedWidthGBK reads a fixed-width file in GBK, as Chinese banks
// send them: a heading, a merchant's name in Chinese between the fields
// read (byte positions count GBK's two bytes a character), amounts in
// yuan, a totals line.
func TestFixedWidthGBK(t *testing.T) {
	f := config.ReconFormat{Source: "bank", Layout: "fixed", Encoding: "gbk", SkipLines: 1, TrailerPrefix: "TOTAL", Amount: "decimal",
		Fields: []config.FixedField{{Name: "acquirer", Start: 1, Width: 11}, {Name: "terminal", Start: 12, Width: 8},
			{Name: "stan", Start: 20, Width: 6}, {Name: "rrn", Start: 26, Width: 12}, {Name: "transmitted", Start: 38, Width: 10},
			{Name: "amount", Start: 58, Width: 12}, {Name: "currency", Start: 70, Width: 3}}}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	lines := "对账文件 20261201\n" +
		"00000001234ATM000010000420000000000421201101010上海分行" + "  " + "      100.00156\n" +
		"TOTAL 1\n"
	enc, err := simplifiedchinese.GBK.NewEncoder().String(lines)
	if err != nil {
		t.Fatal(err)
	}
	rows := BankRows(f, defaultBank(), strings.NewReader(enc))
	var got []string
	for rows.Next() {
		r := rows.Row()
		got = append(got, fmt.Sprintf("%s %s %s %s %s %d %s line %d", r.Acquirer, r.Terminal, r.STAN, r.RRN, r.Transmitted, r.Amount, r.Currency, r.Line))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if want := "1234 ATM00001 000042 000000000042 1201101010 10000 156 line 2"; len(got) != 1 || got[0] != want {
		t.Fatalf("rows %q, want %q", got, want)
	}
	if _, err := readAll(t, f, defaultBank(), strings.NewReader(enc[:len(enc)-30])); err == nil {
		t.Error("a line cut short was read")
	}
}

// bigFile is a settlement file of n rows, made as it is read.
type bigFile struct {
	n, i int
	buf  bytes.Buffer
}

func (b *bigFile) Read(p []byte) (int, error) {
	for b.buf.Len() < len(p) && b.i <= b.n {
		if b.i == 0 {
			b.buf.WriteString(header)
		} else {
			fmt.Fprintf(&b.buf, "1234,ATM%05d,%06d,%012d,1201101010,0200,000000,%d,156,00\n", b.i%100000, b.i%1000000, b.i, 100+b.i%9000)
		}
		b.i++
	}
	if b.buf.Len() == 0 {
		return 0, io.EOF
	}
	return b.buf.Read(p)
}

// TestLargeFileInBoundedMemory reads a settlement file of about 200 MB
// and holds the heap to a few megabytes throughout: rows are read one at
// a time, never the file.
func TestLargeFileInBoundedMemory(t *testing.T) {
	const rows = 2_800_000 // about 72 bytes a row
	src := &bigFile{n: rows}
	r := BankRows(config.BuiltinReconFormats()[config.DefaultBankFormat], defaultBank(), src)
	var ms runtime.MemStats
	var peak uint64
	n := 0
	for r.Next() {
		n++
		if n%200_000 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if n != rows {
		t.Fatalf("%d rows read, want %d", n, rows)
	}
	if peak > 32<<20 {
		t.Fatalf("heap in use reached %d MiB reading the file", peak>>20)
	}
	t.Logf("%d rows; heap in use at most %.1f MiB", n, float64(peak)/(1<<20))
}

// endless is a quote opened and never closed: one CSV field that would
// run on for ever.
type endless struct{ started bool }

func (e *endless) Read(p []byte) (int, error) {
	if !e.started {
		e.started = true
		return copy(p, header+`1234,"ATM`), nil
	}
	for i := range p {
		p[i] = 'x'
		if i%100 == 99 {
			p[i] = '\n'
		}
	}
	return len(p), nil
}

// TestHostileFiles: files that would crash a careless reader or hold it
// in memory are refused with their line, and values are quoted short and
// with card numbers masked.
func TestHostileFiles(t *testing.T) {
	csv := config.BuiltinReconFormats()[config.DefaultBankFormat]
	for _, c := range []struct{ file, want string }{
		{header + `a"b,c` + "\n", "line 2"},
		{header + `"x`, "line 2"},
		{`"x`, "line 1"},
		{header + "1234,ATM00001,1,6228480000000001234,1201101010,,,100,156,\n", `"622848*********1234"`},
		{header + strings.Repeat("9", 300) + ",ATM1,1,1,1201101010,,,1,156,\n", "…"},
	} {
		_, err := readAll(t, csv, defaultBank(), strings.NewReader(c.file))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.file, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "6228480000000001234") {
			t.Errorf("an error repeats a card number: %v", err)
		}
	}
	var ms runtime.MemStats
	_, err := readAll(t, csv, defaultBank(), &endless{})
	runtime.ReadMemStats(&ms)
	if err == nil || !strings.Contains(err.Error(), "a quote never closed") {
		t.Fatalf("a quote never closed: %v", err)
	}
	if ms.HeapInuse > 64<<20 {
		t.Errorf("heap in use %d MiB after a quote never closed", ms.HeapInuse>>20)
	}
}

// TestLayoutOptions: lines skipped before a header, a trailer of another
// shape, and an acquirer of zeros read as the ledger keeps it.
func TestLayoutOptions(t *testing.T) {
	f := config.BuiltinReconFormats()[config.DefaultBankFormat]
	f.SkipLines, f.TrailerPrefix = 1, "TOTAL"
	file := "BANK SETTLEMENT 2026-12-01\n" + header + "0000,ATM00001,42,000000000042,1201101010,0200,000000,10000,156,00\nTOTAL,1\n"
	rows := BankRows(f, defaultBank(), strings.NewReader(file))
	n := 0
	for rows.Next() {
		n++
		if r := rows.Row(); r.Acquirer != "0" || r.Line != 3 {
			t.Errorf("row %+v", r)
		}
	}
	if err := rows.Err(); err != nil || n != 1 {
		t.Fatalf("%d rows, %v", n, err)
	}
}

// TestFilesCutShort: a file without its header, or with nothing but a
// heading or blank lines, is empty (never a day of no transactions); a
// heading is skipped unread, quotes and all; a byte order mark before a
// quoted header is no part of it; bytes not of the format's encoding are
// refused.
func TestFilesCutShort(t *testing.T) {
	csv := config.BuiltinReconFormats()[config.DefaultBankFormat]
	titled := csv
	titled.SkipLines = 1
	fixed := config.ReconFormat{Source: "bank", Layout: "fixed", SkipLines: 1, Encoding: "gbk",
		Fields: []config.FixedField{{Name: "acquirer", Start: 1, Width: 4}, {Name: "terminal", Start: 5, Width: 4},
			{Name: "stan", Start: 9, Width: 6}, {Name: "rrn", Start: 15, Width: 4}, {Name: "transmitted", Start: 19, Width: 10},
			{Name: "amount", Start: 29, Width: 3}, {Name: "currency", Start: 32, Width: 3}}}
	quoted := `"acquirer","terminal","stan","rrn","transmitted","mti","processing_code","amount","currency","response_code"` + "\n"
	good := "1234,ATM1,000042,RRN1,1201101010,0200,000000,100,156,00\n"
	for _, c := range []struct {
		name string
		f    config.ReconFormat
		file string
		rows int
		want string
	}{
		{"a title, no header", titled, "SETTLEMENT 2026-12-01\n", 0, "empty"},
		{"blank lines", fixed, "\n\n\n", 0, "empty"},
		{"a heading alone", fixed, "HEADING\n", 0, "empty"},
		{"a heading with quotes", titled, `Settlement "final" 2026-12-01` + "\n" + header + good, 1, ""},
		{"a BOM before a quoted header", csv, "\ufeff" + quoted + good, 1, ""},
		{"a line number after a heading", titled, "TITLE\n" + header + good + "1234,ATM1\n", 0, "line 4:"},
		{"not UTF-8", csv, header + strings.Replace(good, "ATM1", "AT\xff1", 1), 0, "line 2: column 2 is not utf-8"},
		{"not GBK", fixed, "HEADING\n1234ATM10000421234120110101010\x81\x20156\n", 0, "not gbk"},
	} {
		n, err := readAll(t, c.f, defaultBank(), strings.NewReader(c.file))
		switch {
		case c.want == "" && (err != nil || n != c.rows):
			t.Errorf("%s: %d rows, %v", c.name, n, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %d rows, %v; want %q", c.name, n, err, c.want)
		}
	}
}
