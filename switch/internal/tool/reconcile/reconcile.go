// Package reconcile is goldcard reconcile: match a bank's daily
// settlement file, or the fund company's confirmations, against the
// ledger through a running switch's admin API, and print what breaks.
package reconcile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/goldcard/goldcard/switch/internal/cli"
	"github.com/goldcard/goldcard/switch/internal/client"
)

// result is the admin API's answer to a run.
type result struct {
	Run            int64    `json:"run"`
	Bank           string   `json:"bank"`
	BusinessDate   string   `json:"business_date"`
	Rows           int64    `json:"rows"`
	Matched        int64    `json:"matched"`
	MissingHere    int64    `json:"missing_here"`
	MissingThere   int64    `json:"missing_there"`
	AmountMismatch int64    `json:"amount_mismatch"`
	StateMismatch  int64    `json:"state_mismatch"`
	Settled        int64    `json:"settled"`
	Review         int64    `json:"review"`
	Open           int64    `json:"open"`
	Cases          []caseOf `json:"cases"`
}

type caseOf struct {
	ID     int64  `json:"id"`
	Kind   string `json:"kind"`
	Ident  string `json:"ident"`
	Card   string `json:"card"`
	Ours   *int64 `json:"ours"`
	Theirs *int64 `json:"theirs"`
	State  string `json:"state"`
}

// Command is goldcard reconcile and its subcommands bank and fund.
func Command() *cobra.Command {
	var (
		admin, bank, date, format string
		asJSON                    bool
	)
	c := &cobra.Command{
		Use:   "reconcile",
		Short: "Reconcile daily files with the ledger through a running switch's admin API",
		Args:  cli.NoArgs,
	}
	c.PersistentFlags().StringVar(&admin, "admin", "http://127.0.0.1:8080", "admin API of a running switch")
	c.PersistentFlags().StringVar(&date, "date", "", "business date of the file, YYYY-MM-DD (required)")
	c.PersistentFlags().StringVar(&format, "format", "", "the file's format, as the config center names it (default: csv)")
	c.PersistentFlags().BoolVar(&asJSON, "json", false, "print the run as one JSON object: the four counts and the cases")
	bankCmd := &cobra.Command{
		Use:   "bank --bank CODE --date YYYY-MM-DD FILE",
		Short: "Match a bank's settlement file for a business date against the ledger",
		Long: `Match a bank's settlement file for a business date against what the ledger
settled with the bank on that date, and print the breaks: missing_here (the
bank settled it, the ledger did not), missing_there (the ledger did, the bank
did not) and amount_mismatch. Each break is a case, worked through the admin
API (GET /v1/cases). A later run of the same date, a corrected file say,
replaces the earlier run's result; running one file twice changes nothing.

A case an operator closed (adjusted, written off) that a later run no longer
finds is marked for review: what was done about it may now be wrong.

Exit status: 0 when no case is left open or to review, 1 when one is (or on
an error), 2 for a command line that cannot run. A file that cannot be read
is refused with the line that is wrong, and nothing is recorded.`,
		Example: `  goldcard reconcile bank --bank default --date 2026-12-01 settlement-20261201.csv
  GOLDCARD_OPERATOR=li.wei goldcard reconcile bank --bank icbc --date 2026-12-01 --format icbc-fixed ICBC_20261201.txt --json`,
		Args: cli.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if bank == "" || date == "" {
				return cli.UsageError{Err: errors.New("--bank and --date are required")}
			}
			if _, err := time.Parse(time.DateOnly, date); err != nil {
				return cli.UsageError{Err: fmt.Errorf("--date %q: want YYYY-MM-DD", date)}
			}
			q := url.Values{"bank": {bank}, "date": {date}}
			if format != "" {
				q.Set("format", format)
			}
			return run(c, admin, "/v1/reconciliations/bank?"+q.Encode(), args[0], asJSON)
		},
	}
	bankCmd.Flags().StringVar(&bank, "bank", "", "the bank's code in the config (required)")
	fundCmd := &cobra.Command{
		Use:   "fund --date YYYY-MM-DD FILE",
		Short: "Match the fund company's confirmation file for a day against the switch's orders",
		Long: `Match the fund company's confirmation file for a day against the orders the
switch placed that day (redemptions by the day of their quota, subscriptions
by the day of their sweep). An order the switch still holds pending that the
file says was confirmed or failed, at the same amount, is settled as the file
says, as its own follow-up would settle it (counted as settled). Then every
order is matched by its id: missing_here (the fund company has it, the switch
never placed it), missing_there (the switch placed it, and holds it confirmed
or pending, the file does not list it), amount_mismatch and state_mismatch
(one side confirmed, the other failed). Each break is a case.

Exit status: 0 when no case is left open, 1 when one is (or on an error),
2 for a command line that cannot run.`,
		Example: "  goldcard reconcile fund --date 2026-12-01 fund-confirmations-20261201.csv",
		Args:    cli.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if date == "" {
				return cli.UsageError{Err: errors.New("--date is required")}
			}
			if _, err := time.Parse(time.DateOnly, date); err != nil {
				return cli.UsageError{Err: fmt.Errorf("--date %q: want YYYY-MM-DD", date)}
			}
			q := url.Values{"date": {date}}
			if format != "" {
				q.Set("format", format)
			}
			return run(c, admin, "/v1/reconciliations/fund?"+q.Encode(), args[0], asJSON)
		},
	}
	c.AddCommand(bankCmd, fundCmd)
	cli.RefuseUnknownCommands(c)
	return c
}

func run(c *cobra.Command, admin, path, file string, asJSON bool) error {
	f, err := os.Open(file)
	if err != nil {
		return cli.UsageError{Err: err}
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return cli.UsageError{Err: fmt.Errorf("%s is not a file", file)}
	}
	var sent atomic.Int64
	stop := cli.Progress(c.ErrOrStderr(), &sent, time.Now(), "bytes sent")
	resp, err := client.Upload(c.Context(), admin, path, "text/csv", &counting{r: f, n: &sent})
	stop()
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return client.AdminFailure(raw, resp.StatusCode)
	}
	// A run's cases may be many: they are printed as they arrive, never
	// held (with --json the answer is copied out as it comes).
	out := c.OutOrStdout()
	var body io.Reader = resp.Body
	if asJSON {
		body = io.TeeReader(resp.Body, out)
	}
	p := &printer{w: out, quiet: asJSON}
	r, err := decodeRun(body, p.head, p.row)
	if err != nil {
		return fmt.Errorf("the admin API's answer was cut short: %w", err)
	}
	if asJSON {
		_, _ = io.Copy(out, resp.Body) // the closing newline
	}
	switch {
	case r.Open > 0 && r.Review > 0:
		return fmt.Errorf("run %d: %d cases open (GET /v1/cases?state=open), and %d closed cases no longer found, to review", r.Run, r.Open, r.Review)
	case r.Open > 0:
		return fmt.Errorf("run %d: %d cases open (GET /v1/cases?state=open)", r.Run, r.Open)
	case r.Review > 0:
		return fmt.Errorf("run %d: %d closed cases no longer found: review what was done about them (GET /v1/cases/{id})", r.Run, r.Review)
	}
	return nil
}

// decodeRun reads a run's answer as it streams: head is called with the
// counts, then row with each case.
func decodeRun(r io.Reader, head func(result), row func(caseOf)) (result, error) {
	dec := json.NewDecoder(r)
	var res result
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return res, fmt.Errorf("not a run: %v", err)
	}
	fields := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return res, err
		}
		key, _ := t.(string)
		if key != "cases" {
			var v json.RawMessage
			if err := dec.Decode(&v); err != nil {
				return res, err
			}
			fields[key] = v
			continue
		}
		b, _ := json.Marshal(fields)
		if err := json.Unmarshal(b, &res); err != nil {
			return res, err
		}
		head(res)
		if t, err := dec.Token(); err != nil || t != json.Delim('[') {
			return res, fmt.Errorf("cases are not a list: %v", err)
		}
		for dec.More() {
			var k caseOf
			if err := dec.Decode(&k); err != nil {
				return res, err
			}
			row(k)
		}
		if _, err := dec.Token(); err != nil {
			return res, err
		}
	}
	if _, err := dec.Token(); err != nil {
		return res, err
	}
	return res, nil
}

// printer prints a run for people: its counts, then a line a case.
type printer struct {
	w      io.Writer
	quiet  bool
	titled bool
	bank   bool
}

func (p *printer) head(r result) {
	if p.quiet {
		return
	}
	source := "bank " + r.Bank
	if r.Bank == "" {
		source = "the fund company"
	}
	fmt.Fprintf(p.w, "run %d: %s, business date %s, %d rows\n", r.Run, source, r.BusinessDate, r.Rows)
	fmt.Fprintf(p.w, "matched %d  missing_here %d  missing_there %d  amount_mismatch %d", r.Matched, r.MissingHere, r.MissingThere, r.AmountMismatch)
	if r.Bank == "" {
		fmt.Fprintf(p.w, "  state_mismatch %d  settled %d", r.StateMismatch, r.Settled)
	}
	if r.Review > 0 {
		fmt.Fprintf(p.w, "  review %d", r.Review)
	}
	fmt.Fprintln(p.w)
}

func (p *printer) row(k caseOf) {
	if p.quiet {
		return
	}
	const format = "%-8s %-16s %-52s %-28s %12s %12s %s\n"
	if !p.titled {
		fmt.Fprintf(p.w, format, "CASE", "KIND", "TRANSACTION", "CARD", "OURS", "THEIRS", "STATE")
		p.titled = true
	}
	fmt.Fprintf(p.w, format, strconv.FormatInt(k.ID, 10), k.Kind, transaction(k.Ident), orDash(k.Card), money(k.Ours), money(k.Theirs), k.State)
}

// transaction is a case's identity for people: a bank transaction's
// fields (a JSON array in the API) joined by "/", a fund order's id as it
// is.
func transaction(ident string) string {
	var parts []string
	if json.Unmarshal([]byte(ident), &parts) == nil {
		return strings.Join(parts, "/")
	}
	return ident
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func money(v *int64) string {
	if v == nil {
		return "-"
	}
	return client.FormatAmount(*v)
}

// counting counts the bytes read through it.
type counting struct {
	r io.Reader
	n *atomic.Int64
}

func (c *counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
