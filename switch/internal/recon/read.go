// Package recon reads the daily files a card program reconciles: each
// bank's settlement file and the fund company's confirmations, in the
// formats the config center names (config.ReconFormat). Files are read a
// row at a time, so one of any size is matched in bounded memory; every
// error names the line it is on.
package recon

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/transform"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
)

// MaxLine bounds one line of a file, in bytes: a file with a longer one is
// refused rather than read into memory whole.
const MaxLine = 64 << 10

// ErrEmpty is a file with nothing in it, not even a header.
var ErrEmpty = errors.New("the file is empty")

// A LineError is a row that cannot be read, and where.
type LineError struct {
	Line  int64
	Field string // empty when the line as a whole is wrong
	Err   error
}

func (e *LineError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("line %d: %s: %v", e.Line, e.Field, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// records reads a file's records by its format: each one's line and its
// fields by name.
type records struct {
	f     config.ReconFormat
	names []string
	csv   *csv.Reader
	lines *bufio.Reader
	dec   *encoding.Decoder
	line  int64
	// trailer is TrailerPrefix as a fixed file's bytes: in its encoding.
	trailer []byte
	values  map[string]string
	limit   *lineLimit
	err     error
	any     bool
	headed  bool  // the header row has been read
	skipped int64 // lines skipped before the CSV reader's first
}

func newRecords(f config.ReconFormat, r io.Reader) *records {
	rs := &records{f: f, names: f.Names(), values: map[string]string{}}
	var enc encoding.Encoding
	switch f.Encoding {
	case "gbk":
		enc = simplifiedchinese.GBK
	case "gb18030":
		enc = simplifiedchinese.GB18030
	}
	if f.Layout == "fixed" {
		// Lines are measured in the file's own bytes, where its fields are.
		rs.limit = &lineLimit{r: r}
		rs.lines = bufio.NewReaderSize(rs.limit, 4096)
		rs.trailer = []byte(f.TrailerPrefix)
		if enc != nil {
			rs.dec = enc.NewDecoder()
			if b, err := enc.NewEncoder().Bytes(rs.trailer); err == nil {
				rs.trailer = b
			}
		}
		return rs
	}
	if enc != nil {
		r = transform.NewReader(r, enc.NewDecoder())
	}
	// Rows are measured as the CSV reader reads them: decoded.
	rs.limit = &lineLimit{r: r, csv: true}
	c := csv.NewReader(&csvStart{r: bufio.NewReader(rs.limit), skip: f.SkipLines, rs: rs})
	if f.Delimiter != "" {
		c.Comma, _ = utf8.DecodeRuneInString(f.Delimiter)
	}
	c.FieldsPerRecord = -1 // a trailer may have fewer: counted after it is told apart
	c.ReuseRecord = true
	rs.csv = c
	return rs
}

// csvStart hands the CSV reader a file from its first row: a byte order
// mark and the lines skip_lines names are dropped as lines, unparsed (a
// heading may hold anything, quotes included).
type csvStart struct {
	r       *bufio.Reader
	skip    int
	rs      *records
	started bool
}

func (c *csvStart) Read(p []byte) (int, error) {
	if !c.started {
		c.started = true
		if b, err := c.r.Peek(3); err == nil && string(b) == "\ufeff" {
			_, _ = c.r.Discard(3)
		}
		for ; c.skip > 0; c.skip-- {
			line, err := c.r.ReadSlice('\n')
			for err == bufio.ErrBufferFull {
				line, err = c.r.ReadSlice('\n')
			}
			if len(line) == 0 && err != nil {
				return 0, err
			}
			c.rs.skipped++
		}
	}
	return c.r.Read(p)
}

// next reads the next record into values; false at the end or on an
// error (err).
func (rs *records) next() bool {
	if rs.err != nil {
		return false
	}
	var ok bool
	if rs.csv != nil {
		ok = rs.nextCSV()
	} else {
		ok = rs.nextFixed()
	}
	if !ok && rs.err == nil && !rs.any {
		rs.err = ErrEmpty
	}
	return ok
}

func (rs *records) nextCSV() bool {
	for {
		rec, err := rs.csv.Read()
		if err == io.EOF {
			if rs.f.Header && !rs.headed {
				rs.any = false // a file without its header is empty
			}
			return false
		}
		if err != nil {
			rs.err = csvError(err, rs.skipped)
			return false
		}
		rs.limit.record(rs.csv.InputOffset())
		line, _ := rs.csv.FieldPos(0)
		rs.line = int64(line) + rs.skipped
		rs.any = true
		for i := range rec {
			if !utf8.ValidString(rec[i]) || strings.ContainsRune(rec[i], utf8.RuneError) {
				rs.err = &LineError{Line: rs.line, Err: fmt.Errorf("column %d is not %s (the format's encoding)", i+1, encodingName(rs.f))}
				return false
			}
		}
		if rs.f.Header && !rs.headed {
			rs.headed = true
			if err := rs.checkHeader(rec); err != nil {
				rs.err = err
				return false
			}
			continue
		}
		if rs.f.TrailerPrefix != "" && len(rec) > 0 && strings.HasPrefix(rec[0], rs.f.TrailerPrefix) {
			continue
		}
		if len(rec) != len(rs.names) {
			rs.err = &LineError{Line: rs.line, Err: fmt.Errorf("%d fields; the format has %d", len(rec), len(rs.names))}
			return false
		}
		for i, name := range rs.names {
			if name != "" {
				rs.values[name] = strings.TrimSpace(rec[i])
			}
		}
		return true
	}
}

func encodingName(f config.ReconFormat) string {
	if f.Encoding == "" {
		return "utf-8"
	}
	return f.Encoding
}

func csvError(err error, skipped int64) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &LineError{Line: int64(pe.Line) + skipped, Err: pe.Err}
	}
	return err
}

func (rs *records) checkHeader(rec []string) error {
	if len(rec) != len(rs.names) {
		return &LineError{Line: rs.line, Err: fmt.Errorf("the header has %d columns; the format's are %s", len(rec), strings.Join(rs.names, ","))}
	}
	for i, name := range rs.names {
		if name != "" && !strings.EqualFold(strings.TrimSpace(rec[i]), name) {
			return &LineError{Line: rs.line, Err: fmt.Errorf("the header names column %d %s; the format's columns are %s",
				i+1, quote(strings.TrimSpace(rec[i])), strings.Join(rs.names, ","))}
		}
	}
	return nil
}

func (rs *records) nextFixed() bool {
	for {
		raw, err := rs.lines.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A line longer than the buffer: read it on, up to MaxLine.
			long := append([]byte(nil), raw...)
			for err == bufio.ErrBufferFull {
				raw, err = rs.lines.ReadSlice('\n')
				long = append(long, raw...)
			}
			raw = long
		}
		if len(raw) == 0 && err != nil {
			if err != io.EOF {
				rs.err = csvError(err, 0)
			}
			return false
		}
		if err != nil && err != io.EOF {
			rs.err = csvError(err, 0)
			return false
		}
		rs.line++
		raw = bytes.TrimRight(raw, "\r\n")
		if rs.line == 1 {
			raw = bytes.TrimPrefix(raw, []byte("\ufeff"))
		}
		// A file is empty unless it has a row or a trailer: a heading
		// alone is a file cut short.
		if rs.line <= int64(rs.f.SkipLines) || len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		rs.any = true
		if len(rs.trailer) > 0 && bytes.HasPrefix(raw, rs.trailer) {
			continue
		}
		for _, fl := range rs.f.Fields {
			if fl.Start-1+fl.Width > len(raw) {
				rs.err = &LineError{Line: rs.line, Field: fl.Name, Err: fmt.Errorf("the line has %d bytes; the field ends at byte %d", len(raw), fl.Start-1+fl.Width)}
				return false
			}
			b := raw[fl.Start-1 : fl.Start-1+fl.Width]
			if rs.dec != nil {
				d, err := rs.dec.Bytes(b)
				if err != nil || bytes.ContainsRune(d, utf8.RuneError) {
					rs.err = &LineError{Line: rs.line, Field: fl.Name, Err: fmt.Errorf("not %s", rs.f.Encoding)}
					return false
				}
				b = d
			} else if !utf8.Valid(b) {
				rs.err = &LineError{Line: rs.line, Field: fl.Name, Err: errors.New("not UTF-8 (the format's encoding)")}
				return false
			}
			rs.values[fl.Name] = strings.TrimSpace(string(b))
		}
		if err == io.EOF {
			// The last line had no line break; the next read ends.
			rs.lines = bufio.NewReader(strings.NewReader(""))
		}
		return true
	}
}

// lineLimit refuses a line longer than MaxLine, and a record (a CSV
// row whose quoted fields run over lines) longer than maxRecord: neither
// is read into memory whole.
type lineLimit struct {
	r         io.Reader
	run       int
	line      int64
	read      int64 // bytes read through it
	recordEnd int64 // where the last record read ended
	csv       bool  // records are CSV rows, marked by record
}

// maxRecord bounds one CSV record, line breaks inside quotes included.
const maxRecord = 4 * MaxLine

// record marks where a record ended (csv.Reader.InputOffset).
func (l *lineLimit) record(end int64) { l.recordEnd = end }

func (l *lineLimit) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for _, c := range p[:n] {
		if c == '\n' {
			l.run = 0
			l.line++
			continue
		}
		l.run++
		if l.run > MaxLine {
			return 0, &LineError{Line: l.line + 1, Err: fmt.Errorf("longer than %d bytes", MaxLine)}
		}
	}
	l.read += int64(n)
	// The CSV reader reads ahead of the record it is on by at most its
	// buffer (4 KiB).
	if l.csv && l.read-l.recordEnd > maxRecord+4096 {
		return 0, &LineError{Line: l.line, Err: fmt.Errorf("a row runs over more than %d bytes (a quote never closed?)", maxRecord)}
	}
	return n, err
}

// quote is a value for an error: quoted, cut to 40 bytes, and with any
// run of digits long enough to be a card number masked.
func quote(s string) string {
	if len(s) > 40 {
		cut := 40
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return strconv.Quote(iso.MaskPANs(s))
}

// digits reports whether s is n to m ASCII digits.
func digits(s string, n, m int) bool {
	if len(s) < n || len(s) > m {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// amount reads an amount in minor units as the format writes it.
func amount(f config.ReconFormat, s string) (int64, error) {
	if f.Amount == "decimal" {
		whole, frac, ok := strings.Cut(s, ".")
		if !ok || !digits(whole, 1, 16) || !digits(frac, 2, 2) {
			return 0, fmt.Errorf("%s is not an amount in major units with two decimals (as 123.45)", quote(s))
		}
		s = whole + frac
	} else if !digits(s, 1, 18) {
		return 0, fmt.Errorf("%s is not a whole number of minor units", quote(s))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > 999_999_999_999 {
		return 0, fmt.Errorf("%s is more than an ISO 8583 amount holds", quote(s))
	}
	return n, nil
}
