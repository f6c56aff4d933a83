package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/goldcard/goldcard/switch/internal/cli"
	"github.com/goldcard/goldcard/switch/internal/client"
)

type topFlags struct {
	addrs    []string
	once     bool
	asJSON   bool
	interval time.Duration
	timeout  time.Duration
}

func newTopCommand() *cobra.Command {
	var f topFlags
	c := &cobra.Command{
		Use:   "top --addr ADMIN[,ADMIN...]",
		Short: "A live view of one or more switches, per bank, from their metrics",
		Long: `Scrape the /metrics of one or more switches (their admin addresses) every
--interval and show, per bank over all of them:

  REQ/S   requests answered per second, every MTI
  OK%     share approved (00) of authorisations, financial messages,
          advices and reversals (network management left out)
  P50 P99 latency of those, arrival to response written, from the
          histogram buckets filled during the interval
  MISS/S  answers given as 91 because the bank's deadline came first
  RDM/S   redemptions asked of the fund company per second
  LINKS   bank connections up (connected or signed on)
  CODES   the most frequent response codes of the interval, with shares

and per instance: whether it could be scraped, its version, the config
revision it runs on, whether it leads the timer, whether etcd and PostgreSQL
answer it, and its requests in flight.

Rates are over the interval between two scrapes, so the first frame comes
one interval after the start. The view fits an 80x24 terminal and is redrawn
in place; press Ctrl-C to leave. --once waits one interval, prints one
frame as plain text (or JSON with --json) and exits; its status is 1 if any
instance could not be scraped. Without a terminal and without --once, a frame
is printed after every interval (one JSON object per line with --json).`,
		Example: `  goldcard top
  goldcard top --addr 10.0.0.5:8080,10.0.0.6:8080,10.0.0.7:8080
  goldcard top --addr 10.0.0.5:8080 --once --interval 5s --json | jq '.banks[]'`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var addrs []string
			for _, a := range f.addrs {
				for _, p := range strings.Split(a, ",") {
					if p = strings.TrimSpace(p); p != "" {
						addrs = append(addrs, p)
					}
				}
			}
			if len(addrs) == 0 {
				return cli.UsageError{Err: errors.New("--addr names no admin address")}
			}
			if f.interval < 100*time.Millisecond {
				return cli.UsageError{Err: fmt.Errorf("--interval %s: want at least 100ms", f.interval)}
			}
			f.addrs = addrs
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runTop(ctx, c.OutOrStdout(), f)
		},
	}
	fl := c.Flags()
	fl.StringSliceVar(&f.addrs, "addr", []string{"127.0.0.1:8080"}, "admin addresses of the switches (HOST:PORT or URL), comma-separated or repeated")
	fl.BoolVar(&f.once, "once", false, "print one frame and exit")
	fl.BoolVar(&f.asJSON, "json", false, "print frames as JSON")
	fl.DurationVar(&f.interval, "interval", time.Second, "time between scrapes; rates are over it")
	fl.DurationVar(&f.timeout, "timeout", 2*time.Second, "how long to wait for one instance's metrics")
	return c
}

func runTop(ctx context.Context, w io.Writer, f topFlags) error {
	s := &topScraper{client: &http.Client{Timeout: f.timeout}, addrs: f.addrs}
	width, height, live := 80, 24, false
	if file, ok := w.(*os.File); ok && term.IsTerminal(int(file.Fd())) && !f.once && !f.asJSON {
		live = true
		if cw, ch, err := term.GetSize(int(file.Fd())); err == nil && cw > 0 && ch > 0 {
			width, height = cw, ch
		}
		fmt.Fprint(w, "\x1b[?25l")       // hide the cursor...
		defer fmt.Fprint(w, "\x1b[?25h") // ...and show it again on the way out
	}
	prev := s.scrape(ctx)
	if live {
		fmt.Fprint(w, "\x1b[H\x1b[2J"+renderTop(topView(prev, nil), width, height-1))
	}
	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if f.once {
				return ctx.Err()
			}
			return nil
		case <-tick.C:
		}
		cur := s.scrape(ctx)
		v := topView(cur, prev)
		prev = cur
		switch {
		case f.asJSON:
			b, err := json.Marshal(v)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "%s\n", b)
		case live:
			if file, ok := w.(*os.File); ok {
				if cw, ch, err := term.GetSize(int(file.Fd())); err == nil && cw > 0 && ch > 0 {
					width, height = cw, ch
				}
			}
			fmt.Fprint(w, "\x1b[H\x1b[2J"+renderTop(v, width, height-1)) // the last newline would scroll
		default:
			// Scripts get whole frames, never cut to a screen's height.
			fmt.Fprint(w, renderTop(v, 80, 0))
			if !f.once {
				fmt.Fprintln(w)
			}
		}
		if f.once {
			if down := v.down(); down > 0 {
				return fmt.Errorf("%d of %d instances could not be scraped", down, len(v.Instances))
			}
			return nil
		}
	}
}

// topScraper reads the metrics of a set of instances.
type topScraper struct {
	client *http.Client
	addrs  []string
}

// scrape is every instance's metrics at one moment.
type scrape []*instanceScrape

// instanceScrape is one instance's metrics, flattened: counter and gauge
// values, and histograms as their _bucket (with le), _count and _sum series.
type instanceScrape struct {
	addr   string
	at     time.Time
	err    error
	series []sample
	index  map[string]float64 // by sample.key
}

type sample struct {
	name   string
	labels map[string]string
	key    string
	value  float64
}

func (s *topScraper) scrape(ctx context.Context) scrape {
	out := make(scrape, len(s.addrs))
	var wg sync.WaitGroup
	for i, addr := range s.addrs {
		wg.Go(func() {
			is := &instanceScrape{addr: addr}
			body, err := s.fetch(ctx, addr)
			is.at = time.Now()
			if err == nil {
				err = is.parse(body)
			}
			is.err = err
			out[i] = is
		})
	}
	wg.Wait()
	return out
}

func metricsURL(addr string) string {
	u := addr
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	if i := strings.Index(u, "://"); !strings.Contains(u[i+3:], "/") {
		u += "/metrics"
	}
	return u
}

func (s *topScraper) fetch(ctx context.Context, addr string) (io.Reader, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL(addr), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	creds, err := client.EnvCredentials()
	if err != nil {
		return nil, err
	}
	resp, err := creds.Do(s.client, req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body[:min(len(body), 200)])))
	}
	return strings.NewReader(string(body)), nil
}

// parse reads the text exposition format.
func (is *instanceScrape) parse(r io.Reader) error {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return fmt.Errorf("reading metrics: %w", err)
	}
	is.index = map[string]float64{}
	add := func(name string, labels map[string]string, v float64) {
		s := sample{name: name, labels: labels, key: seriesKey(name, labels), value: v}
		is.series = append(is.series, s)
		is.index[s.key] = v
	}
	for name, fam := range fams {
		for _, m := range fam.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			switch fam.GetType() {
			case dto.MetricType_COUNTER:
				add(name, labels, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				add(name, labels, m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				add(name, labels, m.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				inf := false
				for _, b := range h.GetBucket() {
					inf = inf || math.IsInf(b.GetUpperBound(), 1)
					bl := maps1(labels, "le", strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64))
					add(name+"_bucket", bl, float64(b.GetCumulativeCount()))
				}
				if !inf {
					add(name+"_bucket", maps1(labels, "le", "+Inf"), float64(h.GetSampleCount()))
				}
				add(name+"_count", labels, float64(h.GetSampleCount()))
				add(name+"_sum", labels, h.GetSampleSum())
			}
		}
	}
	return nil
}

// maps1 is a copy of m with k set to v.
func maps1(m map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}

func seriesKey(name string, labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(name)
	for _, k := range keys {
		b.WriteString("\x00" + k + "\x00" + labels[k])
	}
	return b.String()
}

// each calls fn for every sample of metric name.
func (is *instanceScrape) each(name string, fn func(s sample)) {
	for _, s := range is.series {
		if s.name == name {
			fn(s)
		}
	}
}

// gauge is the value of an unlabelled series, and whether it exists.
func (is *instanceScrape) gauge(name string) (float64, bool) {
	v, ok := is.index[seriesKey(name, map[string]string{})]
	return v, ok
}

// increase is how much a counter grew since prev (its value if it was
// reset or did not exist then).
func increase(s sample, prev *instanceScrape) float64 {
	if prev == nil || prev.err != nil {
		return math.NaN()
	}
	old, ok := prev.index[s.key]
	if !ok || s.value < old {
		return s.value
	}
	return s.value - old
}

// restarted reports whether any counter of is went down since prev: the
// instance restarted, and every count it has is since then.
func restarted(is, prev *instanceScrape) bool {
	for _, s := range is.series {
		if strings.HasSuffix(s.name, "_total") || strings.HasSuffix(s.name, "_bucket") || strings.HasSuffix(s.name, "_count") {
			if old, ok := prev.index[s.key]; ok && s.value < old {
				return true
			}
		}
	}
	return false
}

// Approved response codes, for the approval rate.
var approvedCodes = map[string]bool{"00": true, "08": true, "10": true, "11": true}

// networkMTI reports whether an mti label is network management (sign-on,
// echo), left out of approval rates and latencies.
func networkMTI(mti string) bool { return strings.HasPrefix(mti, "08") }

// TopView is one frame of goldcard top.
type TopView struct {
	At        time.Time     `json:"at"`
	Interval  float64       `json:"interval_seconds"` // 0 in the first frame, which has no rates
	Banks     []TopBank     `json:"banks"`
	Instances []TopInstance `json:"instances"`
	Total     *TopBank      `json:"total,omitempty"` // over all banks, when there is more than one
}

// TopBank is one bank over every instance. Rates are per second over the
// interval; nil values had nothing to measure.
type TopBank struct {
	Bank           string     `json:"bank"`
	Requests       float64    `json:"requests_per_second"`
	Approval       *float64   `json:"approval_rate,omitempty"` // 0..1
	Codes          []TopShare `json:"response_codes"`
	P50            *float64   `json:"p50_seconds,omitempty"`
	P99            *float64   `json:"p99_seconds,omitempty"`
	DeadlineMisses float64    `json:"deadline_misses_per_second"`
	Redemptions    float64    `json:"redemptions_per_second"`
	LinksUp        int        `json:"links_up"`

	financial, approved float64
	codeCounts          map[string]float64
	buckets             map[float64]float64 // upper bound -> increase of the cumulative count
}

// TopShare is one response code's share of the interval.
type TopShare struct {
	Code  string  `json:"code"`
	Share float64 `json:"share"` // 0..1
}

// TopInstance is one switch.
type TopInstance struct {
	Addr string `json:"addr"`
	// Since and At are when the scrapes the rates come from were taken.
	Since          *time.Time `json:"since,omitempty"`
	At             time.Time  `json:"at"`
	Up             bool       `json:"up"`
	Error          string     `json:"error,omitempty"`
	Version        string     `json:"version,omitempty"`
	ConfigRevision int64      `json:"config_revision"`
	TimerLeader    bool       `json:"timer_leader"`
	EtcdUp         *bool      `json:"etcd_up,omitempty"`
	PostgresUp     *bool      `json:"postgres_up,omitempty"`
	InFlight       int        `json:"in_flight"`
	Requests       *float64   `json:"requests_per_second,omitempty"`
}

func (v *TopView) down() int {
	n := 0
	for _, i := range v.Instances {
		if !i.Up {
			n++
		}
	}
	return n
}

// topView computes a frame from a scrape and the one before it (nil for
// the first frame).
func topView(cur, prev scrape) *TopView {
	v := &TopView{At: time.Now().UTC()}
	banks := map[string]*TopBank{}
	bank := func(code string) *TopBank {
		b := banks[code]
		if b == nil {
			b = &TopBank{Bank: code, codeCounts: map[string]float64{}, buckets: map[float64]float64{}}
			banks[code] = b
		}
		return b
	}
	var intervals []float64
	for i, is := range cur {
		inst := TopInstance{Addr: is.addr, Up: is.err == nil, At: is.at.UTC()}
		if is.err != nil {
			inst.Error = printable(is.err.Error())
			v.Instances = append(v.Instances, inst)
			continue
		}
		var p *instanceScrape
		if prev != nil && i < len(prev) && prev[i].err == nil {
			p = prev[i]
			if restarted(is, p) {
				// Every counter started again: all of it is new.
				p = &instanceScrape{addr: p.addr, at: p.at, index: map[string]float64{}}
			}
		}
		secs := 0.0
		if p != nil {
			secs = is.at.Sub(p.at).Seconds()
			intervals = append(intervals, secs)
			inst.Since = new(p.at.UTC())
		}
		rate := func(s sample) float64 {
			d := increase(s, p)
			if math.IsNaN(d) || secs <= 0 {
				return 0
			}
			return d / secs
		}
		is.each("goldcard_build_info", func(s sample) { inst.Version = s.labels["version"] })
		if r, ok := is.gauge("goldcard_config_revision"); ok {
			inst.ConfigRevision = int64(r)
		}
		if l, ok := is.gauge("goldcard_timer_leader"); ok {
			inst.TimerLeader = l == 1
		}
		if u, ok := is.gauge("goldcard_etcd_up"); ok {
			inst.EtcdUp = new(u == 1)
		}
		if u, ok := is.gauge("goldcard_postgres_up"); ok {
			inst.PostgresUp = new(u == 1)
		}
		is.each("goldcard_requests_in_flight", func(s sample) { inst.InFlight += int(s.value) })
		is.each("goldcard_connections", func(s sample) {
			b := bank(s.labels["bank"])
			if st := s.labels["state"]; st == linkConnected || st == linkSignedOn {
				b.LinksUp += int(s.value)
			}
		})
		var instRate float64
		is.each("goldcard_requests_total", func(s sample) {
			b, r := bank(s.labels["bank"]), rate(s)
			b.Requests += r
			instRate += r
			if networkMTI(s.labels["mti"]) {
				return
			}
			code := s.labels["response_code"]
			b.financial += r
			b.codeCounts[code] += r
			if approvedCodes[code] {
				b.approved += r
			}
		})
		if p != nil {
			inst.Requests = &instRate
		}
		is.each("goldcard_request_duration_seconds_bucket", func(s sample) {
			if networkMTI(s.labels["mti"]) {
				return
			}
			le, err := strconv.ParseFloat(s.labels["le"], 64)
			if d := increase(s, p); err == nil && !math.IsNaN(d) {
				bank(s.labels["bank"]).buckets[le] += d
			}
		})
		is.each("goldcard_deadline_misses_total", func(s sample) { bank(s.labels["bank"]).DeadlineMisses += rate(s) })
		is.each("goldcard_redemptions_total", func(s sample) {
			if b := banks[s.labels["bank"]]; b != nil { // not "admin" (transfers out)
				b.Redemptions += rate(s)
			}
		})
		v.Instances = append(v.Instances, inst)
	}
	if len(intervals) > 0 {
		v.Interval = slices.Max(intervals)
	}
	total := &TopBank{Bank: "all", codeCounts: map[string]float64{}, buckets: map[float64]float64{}}
	for code, b := range banks {
		if code == "" {
			continue
		}
		total.Requests += b.Requests
		total.DeadlineMisses += b.DeadlineMisses
		total.Redemptions += b.Redemptions
		total.LinksUp += b.LinksUp
		total.financial += b.financial
		total.approved += b.approved
		for c, n := range b.codeCounts {
			total.codeCounts[c] += n
		}
		for le, n := range b.buckets {
			total.buckets[le] += n
		}
		b.finish(v.Interval > 0)
		v.Banks = append(v.Banks, *b)
	}
	slices.SortFunc(v.Banks, func(a, b TopBank) int {
		return cmp.Or(cmp.Compare(b.Requests, a.Requests), cmp.Compare(b.LinksUp, a.LinksUp), strings.Compare(a.Bank, b.Bank))
	})
	if len(v.Banks) > 1 {
		total.finish(v.Interval > 0)
		v.Total = total
	}
	return v
}

// finish turns a bank's sums into rates, shares and quantiles.
func (b *TopBank) finish(rated bool) {
	b.Codes = []TopShare{}
	if !rated {
		return
	}
	if b.financial > 0 {
		b.Approval = new(b.approved / b.financial)
		for c, n := range b.codeCounts {
			if n > 0 {
				b.Codes = append(b.Codes, TopShare{Code: c, Share: n / b.financial})
			}
		}
		slices.SortFunc(b.Codes, func(x, y TopShare) int {
			return cmp.Or(cmp.Compare(y.Share, x.Share), strings.Compare(x.Code, y.Code))
		})
	}
	if q, ok := bucketQuantile(0.5, b.buckets); ok {
		b.P50 = &q
	}
	if q, ok := bucketQuantile(0.99, b.buckets); ok {
		b.P99 = &q
	}
}

// bucketQuantile estimates quantile q from cumulative bucket counts by
// upper bound, interpolating linearly inside the bucket it falls in, as
// Prometheus's histogram_quantile does. A quantile in the +Inf bucket is
// reported as the highest finite bound.
func bucketQuantile(q float64, buckets map[float64]float64) (float64, bool) {
	bounds := make([]float64, 0, len(buckets))
	for le := range buckets {
		bounds = append(bounds, le)
	}
	slices.Sort(bounds)
	if len(bounds) < 2 || !math.IsInf(bounds[len(bounds)-1], 1) {
		return 0, false
	}
	total := buckets[bounds[len(bounds)-1]]
	if total <= 0 {
		return 0, false
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		n := buckets[le]
		if n >= rank {
			if math.IsInf(le, 1) {
				return bounds[len(bounds)-2], true
			}
			if n == below {
				return le, true
			}
			return lower + (le-lower)*(rank-below)/(n-below), true
		}
		lower, below = le, n
	}
	return bounds[len(bounds)-2], true
}

// renderTop draws a frame as text of at most width columns and, when
// height is positive, height lines.
func renderTop(v *TopView, width, height int) string {
	var lines []string
	up := len(v.Instances) - v.down()
	title := fmt.Sprintf("goldcard top  %d/%d instances up", up, len(v.Instances))
	if v.Interval > 0 {
		title += fmt.Sprintf("  over %.1fs", v.Interval)
	} else {
		title += "  (rates from the next frame)"
	}
	lines = append(lines, padBetween(title, v.At.Format("2006-01-02 15:04:05 UTC"), width), "")

	lines = append(lines, fmt.Sprintf("%-10s %7s %5s %6s %6s %6s %6s %5s  %s", "BANK", "REQ/S", "OK%", "P50", "P99", "MISS/S", "RDM/S", "LINKS", "CODES"))
	bankRow := func(b *TopBank) string {
		return fmt.Sprintf("%-10s %7s %5s %6s %6s %6s %6s %5d  %s", cut(b.Bank, 10), fmtRate(b.Requests, v.Interval),
			fmtPercent(b.Approval), fmtSeconds(b.P50), fmtSeconds(b.P99), fmtRate(b.DeadlineMisses, v.Interval),
			fmtRate(b.Redemptions, v.Interval), b.LinksUp, fmtCodes(b.Codes))
	}
	instLines := []string{"", fmt.Sprintf("%-21s %4s %-9s %7s %6s %4s %4s %5s %7s", "INSTANCE", "UP", "VERSION", "CONFIG", "LEADER", "ETCD", "PG", "INFL", "REQ/S")}
	for _, i := range v.Instances {
		if !i.Up {
			instLines = append(instLines, fmt.Sprintf("%-21s %4s %s", cut(i.Addr, 21), "DOWN", i.Error))
			continue
		}
		r := "-"
		if i.Requests != nil {
			r = fmtRate(*i.Requests, v.Interval)
		}
		instLines = append(instLines, fmt.Sprintf("%-21s %4s %-9s %7d %6s %4s %4s %5d %7s", cut(i.Addr, 21), "up",
			cut(i.Version, 9), i.ConfigRevision, yesNo(&i.TimerLeader, "yes", ""), yesNo(i.EtcdUp, "up", "DOWN"),
			yesNo(i.PostgresUp, "up", "DOWN"), i.InFlight, r))
	}
	rows := make([]string, 0, len(v.Banks)+1)
	for i := range v.Banks {
		rows = append(rows, bankRow(&v.Banks[i]))
	}
	if len(v.Banks) == 0 {
		rows = append(rows, "(no bank has a listener yet)")
	}
	total := ""
	if v.Total != nil {
		total = bankRow(v.Total)
	}
	if height > 0 {
		// Keep the instances (as many as fit) and the total; cut banks,
		// the busiest kept, saying how many are left out.
		room := height - len(lines) - len(instLines)
		if total != "" {
			room--
		}
		if room < 2 {
			room = 2
		}
		if len(rows) > room {
			left := len(rows) - (room - 1)
			rows = append(rows[:room-1], fmt.Sprintf("... %d more banks, less busy", left))
		}
	}
	lines = append(lines, rows...)
	if total != "" {
		lines = append(lines, total)
	}
	lines = append(lines, instLines...)
	if height > 0 && len(lines) > height {
		lines = append(lines[:height-1], fmt.Sprintf("... %d more lines", len(lines)-height+1))
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(cut(l, width))
		b.WriteByte('\n')
	}
	return b.String()
}

// printable is s on one line, without control characters, as a proxy's
// error page may hold them.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
	return cut(strings.Join(strings.Fields(s), " "), 300)
}

func padBetween(left, right string, width int) string {
	if gap := width - len(left) - len(right); gap > 0 {
		return left + strings.Repeat(" ", gap) + right
	}
	return left
}

// cut shortens s to n runes.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n <= 1 {
		return string(r[:n])
	}
	return string(r[:n-1]) + "~"
}

func fmtRate(r, interval float64) string {
	switch {
	case interval <= 0:
		return "-"
	case r >= 10000:
		return fmt.Sprintf("%.0f", r)
	case r >= 100:
		return fmt.Sprintf("%.1f", r)
	}
	return fmt.Sprintf("%.2f", r)
}

func fmtPercent(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *p*100)
}

func fmtSeconds(s *float64) string {
	switch {
	case s == nil:
		return "-"
	case *s < 0.1:
		return fmt.Sprintf("%.1fms", *s*1000)
	case *s < 1:
		return fmt.Sprintf("%.0fms", *s*1000)
	}
	return fmt.Sprintf("%.2fs", *s)
}

// fmtCodes is the three commonest codes with their whole-percent shares.
func fmtCodes(cs []TopShare) string {
	parts := make([]string, 0, 3)
	for i, c := range cs {
		if i == 3 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.0f%%", c.Code, c.Share*100))
	}
	return strings.Join(parts, " ")
}

func yesNo(b *bool, yes, no string) string {
	switch {
	case b == nil:
		return "-"
	case *b:
		return yes
	}
	return no
}
