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
	rate        string
	maxInFlight int
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
answer that is not 00 counts as an error.

By default each run keeps a number of requests in flight (--concurrency): a
closed loop, which finds the switch's peak. With --rate it sends at fixed
rates instead (an open loop, as banks do), whatever the switch's answers,
and measures each latency from when the request was due, so that a switch
falling behind shows in the percentiles; a request due while --max-in-flight
are unanswered is not sent and counts as an error.`,
		Example: "  goldcard bench auth --addr 127.0.0.1:8583 --concurrency 8,64 --duration 10s\n" +
			"  goldcard bench auth --rate 500,1000 --duration 30s --json",
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			flag, list := "--concurrency", f.concurrency
			if f.rate != "" {
				flag, list = "--rate", f.rate
			}
			levels, err := parseLevels(flag, list)
			if err != nil {
				return cli.UsageError{Err: err}
			}
			if f.maxInFlight < 1 {
				return cli.UsageError{Err: errors.New("--max-in-flight: want a positive number")}
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
	fl.StringVar(&f.rate, "rate", "", "requests per second, one paced run per comma-separated rate, instead of --concurrency")
	fl.IntVar(&f.maxInFlight, "max-in-flight", 4096, "with --rate: most requests unanswered at once")
	fl.BoolVar(&f.shortfall, "shortfall", false, "issue cards with an empty cash account and a large fund, so every debit redeems from the fund")
	f.tls.AddFlags(c)
	return c
}

func parseLevels(flag, s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%s %q: want positive numbers separated by commas", flag, s)
		}
		out = append(out, n)
	}
	return out, nil
}

// Result is one run's figures, as --json prints them: Concurrency for a
// closed-loop run, Rate for a paced one.
type Result struct {
	Concurrency int     `json:"concurrency,omitempty"`
	Rate        int     `json:"rate,omitempty"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"per_second"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	P999ms      float64 `json:"p999_ms"`
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
		var r Result
		if f.rate != "" {
			fmt.Fprintf(stderr, "sending %d a second for %s...\n", n, f.duration)
			r = runPaced(ctx, stderr, f, d, conns, pans, n, &stan)
		} else {
			fmt.Fprintf(stderr, "running %d in flight for %s...\n", n, f.duration)
			r = runLevel(ctx, stderr, f, d, conns, pans, n, &stan)
		}
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
	first := "concurrency"
	if f.rate != "" {
		first = "rate/s"
	}
	fmt.Fprintf(stdout, "%-12s %10s %8s %10s %9s %9s %9s %9s\n", first, "requests", "errors", "debits/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms")
	for _, r := range results {
		fmt.Fprintf(stdout, "%-12d %10d %8d %10.0f %9.2f %9.2f %9.2f %9.2f\n", r.Concurrency+r.Rate, r.Requests, r.Errors, r.PerSecond, r.P50ms, r.P99ms, r.P999ms, r.Maxms)
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

// debiter sends one run's debits: each with fresh identifying fields, DE37
// starting with the run's number so that a run on a ledger that holds an
// earlier one repeats none of its keys.
type debiter struct {
	f     authFlags
	d     *iso.Dialect
	conns []*connection.Connection
	pans  []string
	stan  *atomic.Int64
	run   int
}

// debit sends one debit on connection w's terminal and reports whether it
// was approved.
func (b debiter) debit(w int) bool {
	s := b.stan.Add(1)
	now := time.Now()
	fields := map[int]string{
		2: b.pans[rand.IntN(len(b.pans))], 3: "000000", 4: "000000000001",
		7: now.UTC().Format("0102150405"), 11: fmt.Sprintf("%06d", s%1000000),
		12: now.Format("150405"), 13: now.Format("0102"),
		32: "999", 37: fmt.Sprintf("%04d%08d", b.run, s%100000000), 41: fmt.Sprintf("B%07d", w), 49: "156",
	}
	m, _ := client.NewMessage(b.d, b.f.mti, fields)
	resp, err := b.conns[w%len(b.conns)].Send(m)
	if err != nil {
		return false
	}
	rc, _ := resp.GetString(39)
	return rc == "00"
}

// tally gathers a run's latencies and errors from its senders.
type tally struct {
	mu        sync.Mutex
	latencies []time.Duration
	errs      int
}

func (t *tally) add(latencies []time.Duration, errs int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.latencies = append(t.latencies, latencies...)
	t.errs += errs
}

// result is the run's figures over elapsed.
func (t *tally) result(elapsed time.Duration) Result {
	slices.Sort(t.latencies)
	pct := func(p float64) float64 {
		if len(t.latencies) == 0 {
			return 0
		}
		return float64(t.latencies[int(p*float64(len(t.latencies)-1))]) / 1e6
	}
	return Result{
		Requests: len(t.latencies) + t.errs, Errors: t.errs, Seconds: elapsed.Seconds(),
		PerSecond: float64(len(t.latencies)) / elapsed.Seconds(),
		P50ms:     pct(0.50), P99ms: pct(0.99), P999ms: pct(0.999), Maxms: pct(1),
	}
}

// measure runs send for the run's duration, with a debiter, the tally it
// adds its latencies and errors to, and the count of requests done for the
// progress line on a terminal; it returns the tally's result.
func measure(ctx context.Context, stderr io.Writer, f authFlags, d *iso.Dialect, conns []*connection.Connection, pans []string, stan *atomic.Int64,
	send func(ctx context.Context, b *debiter, t *tally, done *atomic.Int64, start time.Time)) Result {
	ctx, cancel := context.WithTimeout(ctx, f.duration)
	defer cancel()
	b := &debiter{f: f, d: d, conns: conns, pans: pans, stan: stan, run: rand.IntN(10000)}
	var (
		t    tally
		done atomic.Int64
	)
	start := time.Now()
	stopProgress := cli.Progress(stderr, &done, start, "requests")
	send(ctx, b, &t, &done, start)
	stopProgress()
	return t.result(time.Since(start))
}

// runLevel keeps n debits in flight for the run's duration.
func runLevel(ctx context.Context, stderr io.Writer, f authFlags, d *iso.Dialect, conns []*connection.Connection, pans []string, n int, stan *atomic.Int64) Result {
	r := measure(ctx, stderr, f, d, conns, pans, stan, func(ctx context.Context, b *debiter, t *tally, done *atomic.Int64, _ time.Time) {
		var wg sync.WaitGroup
		for w := range n {
			wg.Go(func() {
				var local []time.Duration
				errs := 0
				for ctx.Err() == nil {
					t0 := time.Now()
					ok := b.debit(w)
					done.Add(1)
					if !ok {
						errs++
						continue
					}
					local = append(local, time.Since(t0))
				}
				t.add(local, errs)
			})
		}
		wg.Wait()
	})
	r.Concurrency = n
	return r
}

// runPaced sends rate debits a second for the run's duration, each on its
// own goroutine at its due time, and measures each from that time: a
// sender that falls behind adds its delay to the latencies it reports. A
// debit due while f.maxInFlight are unanswered is not sent, and counts as
// an error.
func runPaced(ctx context.Context, stderr io.Writer, f authFlags, d *iso.Dialect, conns []*connection.Connection, pans []string, rate int, stan *atomic.Int64) Result {
	r := measure(ctx, stderr, f, d, conns, pans, stan, func(ctx context.Context, b *debiter, t *tally, done *atomic.Int64, start time.Time) {
		var wg sync.WaitGroup
		slots := make(chan struct{}, f.maxInFlight)
		for i := 0; ; i++ {
			due := start.Add(time.Duration(float64(i) * float64(time.Second) / float64(rate)))
			if wait := time.Until(due); wait > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
			}
			if ctx.Err() != nil {
				break
			}
			select {
			case slots <- struct{}{}:
			default:
				t.add(nil, 1)
				done.Add(1)
				continue
			}
			wg.Go(func() {
				defer func() { <-slots }()
				ok := b.debit(i)
				done.Add(1)
				if !ok {
					t.add(nil, 1)
					return
				}
				t.add([]time.Duration{time.Since(due)}, 0)
			})
		}
		wg.Wait()
	})
	r.Rate = rate
	return r
}
