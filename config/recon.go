package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// A ReconFormat is how a daily file to reconcile is written: the bank's
// settlement file or the fund company's confirmations. Formats are data:
// a bank that writes another layout, encoding or set of columns is given
// a format of its own under recon_formats/<name>, and no code changes.
type ReconFormat struct {
	// Source is what the file reconciles: "bank" or "fund".
	Source string `json:"source"`
	// Layout is "csv" (delimited, one row a line) or "fixed" (each field
	// at a byte position of its line).
	Layout string `json:"layout"`
	// Encoding of the file: "utf-8" (the default), "gbk" or "gb18030".
	Encoding string `json:"encoding,omitempty"`
	// Delimiter of a csv file: one character, "," by default.
	Delimiter string `json:"delimiter,omitempty"`
	// Header: a csv file's first line names its columns, and must name
	// them as Columns does.
	Header bool `json:"header,omitempty"`
	// Columns of a csv file: the field each column holds, in order; ""
	// for a column that is not read.
	Columns []string `json:"columns,omitempty"`
	// Fields of a fixed file: where each field lies in a line, in bytes
	// of the file's encoding.
	Fields []FixedField `json:"fields,omitempty"`
	// SkipLines are lines before the first row (a heading), not read.
	SkipLines int `json:"skip_lines,omitempty"`
	// TrailerPrefix marks lines that are not rows (a totals line), when
	// not empty.
	TrailerPrefix string `json:"trailer_prefix,omitempty"`
	// Amount is "minor" (integers in minor units, the default) or
	// "decimal" (major units with exactly two decimals, as 123.45).
	Amount string `json:"amount,omitempty"`
}

// maxFixedLine is the longest fixed-width line a field may reach into (the
// reader refuses longer lines).
const maxFixedLine = 64 << 10

// A FixedField is one field of a fixed-width line: its name, its first
// byte (1 for the first of the line) and its width in bytes.
type FixedField struct {
	Name  string `json:"name"`
	Start int    `json:"start"`
	Width int    `json:"width"`
}

// The fields of each source's rows, and those a row must have.
var (
	BankReconFields   = []string{"acquirer", "terminal", "stan", "rrn", "transmitted", "mti", "processing_code", "amount", "currency", "response_code"}
	bankReconRequired = []string{"acquirer", "terminal", "stan", "rrn", "transmitted", "amount", "currency"}
	FundReconFields   = []string{"order_id", "kind", "amount", "currency", "status", "trade_date"}
	fundReconRequired = []string{"order_id", "kind", "amount", "currency", "status"}
	reconSources      = []string{"bank", "fund"}
	reconEncodings    = []string{"utf-8", "gbk", "gb18030"}
)

// The builtin formats' names, and a bank's default cutover.
const (
	DefaultBankFormat  = "csv"
	DefaultFundFormat  = "fund-csv"
	DefaultCutover     = "00:00"
	DefaultCutoverZone = "Asia/Shanghai"
)

// BuiltinReconFormats are the formats every switch knows: the bank
// settlement CSV and the fund company's confirmation CSV, each with a
// header row.
func BuiltinReconFormats() map[string]ReconFormat {
	return map[string]ReconFormat{
		DefaultBankFormat: {Source: "bank", Layout: "csv", Header: true, Columns: slices.Clone(BankReconFields)},
		DefaultFundFormat: {Source: "fund", Layout: "csv", Header: true, Columns: slices.Clone(FundReconFields)},
	}
}

// Names returns the fields the format reads, in file order.
func (f ReconFormat) Names() []string {
	if f.Layout == "fixed" {
		out := make([]string, len(f.Fields))
		for i, x := range f.Fields {
			out[i] = x.Name
		}
		return out
	}
	return f.Columns
}

// Validate checks a format on its own.
func (f ReconFormat) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	known, required := BankReconFields, bankReconRequired
	switch f.Source {
	case "bank":
	case "fund":
		known, required = FundReconFields, fundReconRequired
	default:
		bad("source %q must be one of %s", f.Source, strings.Join(reconSources, ", "))
	}
	if f.Encoding != "" && !slices.Contains(reconEncodings, f.Encoding) {
		bad("encoding %q must be one of %s", f.Encoding, strings.Join(reconEncodings, ", "))
	}
	if f.Amount != "" && f.Amount != "minor" && f.Amount != "decimal" {
		bad("amount %q must be minor or decimal", f.Amount)
	}
	if f.SkipLines < 0 {
		bad("skip_lines cannot be negative")
	}
	switch f.Layout {
	case "csv":
		if f.Delimiter != "" {
			if r, n := utf8.DecodeRuneInString(f.Delimiter); n != len(f.Delimiter) || r == 0 || r == '"' || r == '\r' || r == '\n' || r == utf8.RuneError {
				bad("delimiter %q must be one character other than a quote or a line break", f.Delimiter)
			}
		}
		if len(f.Fields) > 0 {
			bad("fields are for a fixed layout; a csv one names its columns")
		}
	case "fixed":
		if len(f.Columns) > 0 || f.Header || f.Delimiter != "" {
			bad("columns, header and delimiter are for a csv layout; a fixed one places its fields")
		}
		for i, x := range f.Fields {
			if x.Start < 1 || x.Start > maxFixedLine || x.Width < 1 || x.Width > 256 || x.Start+x.Width-1 > maxFixedLine {
				bad("field %q: start must be from 1 to %d, width from 1 to 256, and the field within %d bytes", x.Name, maxFixedLine, maxFixedLine)
				continue
			}
			for _, y := range f.Fields[:i] {
				if x.Start < y.Start+y.Width && y.Start < x.Start+x.Width {
					bad("fields %q and %q overlap", y.Name, x.Name)
				}
			}
		}
	default:
		bad("layout %q must be csv or fixed", f.Layout)
	}
	seen := map[string]bool{}
	for _, name := range f.Names() {
		if name == "" && f.Layout == "csv" {
			continue
		}
		if !slices.Contains(known, name) {
			bad("field %q is not one of %s", name, strings.Join(known, ", "))
		}
		if seen[name] {
			bad("field %q is named twice", name)
		}
		seen[name] = true
	}
	for _, name := range required {
		if !seen[name] && f.Source != "" {
			bad("field %q is required", name)
		}
	}
	return errors.Join(errs...)
}

// BusinessDate is the business date of a request of the bank's that
// arrived at t, when it did not say its own (DE15): the date in the
// cutover's zone, or the next one from the cutover time on.
func (b *Bank) BusinessDate(t time.Time) time.Time {
	loc, off := b.cutover()
	l := t.In(loc)
	day := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, time.UTC)
	if off > 0 && l.Sub(time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, loc)) >= off {
		day = day.AddDate(0, 0, 1)
	}
	return day
}

// cutover is the bank's cutover zone and time of day.
func (b *Bank) cutover() (*time.Location, time.Duration) {
	zone, at := b.CutoverZone, b.Cutover
	if zone == "" {
		zone = DefaultCutoverZone
	}
	if at == "" {
		at = DefaultCutover
	}
	loc, err := location(zone)
	if err != nil {
		loc = time.UTC // refused by Validate; never on a snapshot
	}
	c, err := time.Parse("15:04", at)
	if err != nil {
		return loc, 0
	}
	return loc, time.Duration(c.Hour())*time.Hour + time.Duration(c.Minute())*time.Minute
}

// locations caches time zones by name: loading one reads the zone
// database, and a request's business date is on every request's path.
var locations sync.Map

func location(name string) (*time.Location, error) {
	if l, ok := locations.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	locations.Store(name, l)
	return l, nil
}

func (b *Bank) validateCutover() error {
	var errs []error
	if _, err := time.Parse("15:04", b.Cutover); b.Cutover != "" && err != nil {
		errs = append(errs, fmt.Errorf("cutover %q must be HH:MM", b.Cutover))
	}
	if _, err := time.LoadLocation(b.CutoverZone); b.CutoverZone != "" && err != nil {
		errs = append(errs, fmt.Errorf("cutover_zone %q is not a known time zone", b.CutoverZone))
	}
	return errors.Join(errs...)
}
