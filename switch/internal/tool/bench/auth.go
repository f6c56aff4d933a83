package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	connection "github.com/moov-io/iso8583-connection"
	"github.com/spf13/cobra"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/cli"
	"github.com/goldcard/goldcard/switch/internal/client"
)

// authFlags are the flags of bench auth.
type authFlags struct {
	addr, admin string
	cards       int
	conns       int
	concurrency string
	duration    time.Duration
	mti         string
	asJSON      bool
	dialect     string
	header      string
	prefix      string
	shortfall   bool
	tls         client.TLS
}

func authCommand() *cobra.Command {
	var f authFlags
	c := &cobra.Command{
		Use:   "auth",
		Short: "Send approved debits to a running switch and report throughput and latency",
		Long: `Send approved debits to a running switch, as a bank would, and report
debits per second and latency percentiles for each concurrency level.

Cards are issued through the admin API with enough balance for the run; each
request debits 0.01 from a random card. With --shortfall the cards hold only
fund shares, so every debit is covered by a redemption from the fund. Every
answer that is not 00 counts as an error.`,
		Example: "  goldcard bench auth --addr 127.0.0.1:8583 --concurrency 8,64 --duration 10s",
		Args:    cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			levels, err := parseLevels(f.concurrency)
			if err != nil {
				return cli.UsageError{Err: err}
			}
			return runAuth(c.Context(), c.OutOrStdout(), c.ErrOrStderr(), f, levels)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8583", "bank listener of the switch")
	fl.StringVar(&f.admin, "admin", "http://127.0.0.1:8080", "admin API of the switch, to issue the cards")
	fl.IntVar(&f.cards, "cards", 1000, "cards to spread the debits over")
	fl.IntVar(&f.conns, "conns", 4, "bank connections to open")
	fl.StringVar(&f.concurrency, "concurrency", "8,64", "requests in flight, one run per comma-separated level")
	fl.DurationVar(&f.duration, "duration", 10*time.Second, "length of each run")
	fl.StringVar(&f.mti, "mti", "0200", "0200 (posted purchase) or 0100 (authorisation hold)")
	fl.BoolVar(&f.asJSON, "json", false, "print results as JSON")
	fl.StringVar(&f.dialect, "dialect", iso.DefaultDialect, "dialect of the bank listener")
	fl.StringVar(&f.header, "header", iso.HeaderBinary2, "length header of the bank listener")
	fl.StringVar(&f.prefix, "pan-prefix", "", "first digits of the cards' PANs (random when empty)")
	fl.BoolVar(&f.shortfall, "shortfall", false, "issue cards with an empty cash account and a large fund, so every debit redeems from the fund")
	f.tls.AddFlags(c)
	return c
}

func parseLevels(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--concurrency %q: want positive numbers separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// Result is one run's figures, as --json prints them.
type Result struct {
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"per_second"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	Maxms       float64 `json:"max_ms"`
}

func runAuth(ctx context.Context, stdout, stderr io.Writer, f authFlags, levels []int) error {
	if f.mti != "0200" && f.mti != "0100" {
		return cli.UsageError{Err: fmt.Errorf("--mti %q: want 0200 or 0100", f.mti)}
	}
	d, err := iso.Builtin(f.dialect)
	if err != nil {
		return cli.UsageError{Err: err}
	}
	h, err := iso.HeaderByName(f.header)
	if err != nil {
		return cli.UsageError{Err: err}
	}
	tlsConf, err := f.tls.Config()
	if err != nil {
		return cli.UsageError{Err: err}
	}
	pans, err := issueCards(ctx, f)
	if err != nil {
		return err
	}
	conns := make([]*connection.Connection, f.conns)
	for i := range conns {
		if conns[i], err = client.DialBank(ctx, f.addr, d, h, client.WithTLS(tlsConf)); err != nil {
			return err
		}
		defer conns[i].Close()
	}
	var stan atomic.Int64
	var results []Result
	for _, n := range levels {
		fmt.Fprintf(stderr, "running %d in flight for %s...\n", n, f.duration)
		r := runLevel(ctx, stderr, f, d, conns, pans, n, &stan)
		results = append(results, r)
		if ctx.Err() != nil {
			break
		}
	}
	if f.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	fmt.Fprintf(stdout, "%-12s %10s %8s %10s %9s %9s %9s\n", "concurrency", "requests", "errors", "debits/s", "p50 ms", "p99 ms", "max ms")
	for _, r := range results {
		fmt.Fprintf(stdout, "%-12d %10d %8d %10.0f %9.2f %9.2f %9.2f\n", r.Concurrency, r.Requests, r.Errors, r.PerSecond, r.P50ms, r.P99ms, r.Maxms)
	}
	return nil
}

func issueCards(ctx context.Context, f authFlags) ([]string, error) {
	prefix := f.prefix
	if prefix == "" {
		prefix = fmt.Sprintf("9%05d", rand.IntN(100000))
	}
	if len(prefix) > 9 {
		return nil, cli.UsageError{Err: errors.New("--pan-prefix: at most 9 digits")}
	}
	pans := make([]string, f.cards)
	for i := range pans {
		pans[i] = fmt.Sprintf("%s%0*d", prefix, 16-len(prefix), i)
		body := map[string]any{"pan": pans[i], "currency": "156", "balance": 1_000_000_000}
		if f.shortfall {
			body = map[string]any{"pan": pans[i], "currency": "156", "fund_balance": 1_000_000_000}
		}
		raw, status, err := client.Admin(ctx, f.admin, http.MethodPost, "/v1/cards", body)
		if err != nil {
			return nil, err
		}
		if status != http.StatusCreated && status != http.StatusConflict {
			return nil, fmt.Errorf("issuing bench cards: HTTP %d: %s", status, raw)
		}
	}
	return pans, nil
}

func runLevel(ctx context.Context, stderr io.Writer, f authFlags, d *iso.Dialect, conns []*connection.Connection, pans []string, n int, stan *atomic.Int64) Result {
	ctx, cancel := context.WithTimeout(ctx, f.duration)
	defer cancel()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		errs      int
		wg        sync.WaitGroup
	)
	var done atomic.Int64
	start := time.Now()
	runID := rand.IntN(10000)
	stopProgress := cli.Progress(stderr, &done, start, "requests")
	for w := range n {
		wg.Go(func() {
			var local []time.Duration
			localErrs := 0
			conn := conns[w%len(conns)]
			for ctx.Err() == nil {
				s := stan.Add(1)
				now := time.Now()
				// DE37 starts with this run's number, so that a run on a
				// ledger that holds an earlier one repeats none of its keys.
				fields := map[int]string{
					2: pans[rand.IntN(len(pans))], 3: "000000", 4: "000000000001",
					7: now.UTC().Format("0102150405"), 11: fmt.Sprintf("%06d", s%1000000),
					12: now.Format("150405"), 13: now.Format("0102"),
					32: "999", 37: fmt.Sprintf("%04d%08d", runID, s%100000000), 41: fmt.Sprintf("B%07d", w), 49: "156",
				}
				m, _ := client.NewMessage(d, f.mti, fields)
				t0 := time.Now()
				resp, err := conn.Send(m)
				el := time.Since(t0)
				done.Add(1)
				if err != nil {
					localErrs++
					continue
				}
				if rc, _ := resp.GetString(39); rc != "00" {
					localErrs++
					continue
				}
				local = append(local, el)
			}
			mu.Lock()
			latencies = append(latencies, local...)
			errs += localErrs
			mu.Unlock()
		})
	}
	wg.Wait()
	stopProgress()
	elapsed := time.Since(start).Seconds()
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		if len(latencies) == 0 {
			return 0
		}
		return float64(latencies[int(p*float64(len(latencies)-1))]) / 1e6
	}
	return Result{
		Concurrency: n, Requests: len(latencies) + errs, Errors: errs, Seconds: elapsed,
		PerSecond: float64(len(latencies)) / elapsed,
		P50ms:     pct(0.50), P99ms: pct(0.99), Maxms: pct(1),
	}
}
