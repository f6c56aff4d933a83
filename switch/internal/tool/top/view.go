package top

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goldcard/goldcard/switch/internal/metric"
)

// networkMTI reports whether an mti label is network management (sign-on,
// echo), left out of approval rates and latencies.
func networkMTI(mti string) bool { return strings.HasPrefix(mti, "08") }

// View is one frame of goldcard top.
type View struct {
	At        time.Time  `json:"at"`
	Interval  float64    `json:"interval_seconds"` // 0 in the first frame, which has no rates
	Banks     []Bank     `json:"banks"`
	Instances []Instance `json:"instances"`
	Total     *Bank      `json:"total,omitempty"` // over all banks, when there is more than one
}

// Bank is one bank over every instance. Rates are per second over the
// interval; nil values had nothing to measure.
type Bank struct {
	Bank           string   `json:"bank"`
	Requests       float64  `json:"requests_per_second"`
	Approval       *float64 `json:"approval_rate,omitempty"` // 0..1
	Codes          []Share  `json:"response_codes"`
	P50            *float64 `json:"p50_seconds,omitempty"`
	P99            *float64 `json:"p99_seconds,omitempty"`
	DeadlineMisses float64  `json:"deadline_misses_per_second"`
	Redemptions    float64  `json:"redemptions_per_second"`
	LinksUp        int      `json:"links_up"`

	financial, approved float64
	codeCounts          map[string]float64
	buckets             map[float64]float64 // upper bound -> increase of the cumulative count
}

// Share is one response code's share of the interval.
type Share struct {
	Code  string  `json:"code"`
	Share float64 `json:"share"` // 0..1
}

// Instance is one switch.
type Instance struct {
	Addr string `json:"addr"`
	// Since and At are when the scrapes the rates come from were taken
	// (their answers came); SinceAsked and AtAsked when they were sent.
	// The switch read its counters between the two of each.
	Since          *time.Time `json:"since,omitempty"`
	At             time.Time  `json:"at"`
	SinceAsked     *time.Time `json:"since_asked,omitempty"`
	AtAsked        time.Time  `json:"at_asked"`
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

func (v *View) down() int {
	n := 0
	for _, i := range v.Instances {
		if !i.Up {
			n++
		}
	}
	return n
}

// newView computes a frame from a scrape and the one before it (nil for
// the first frame).
func newView(cur, prev scrape) *View {
	v := &View{At: time.Now().UTC()}
	banks := map[string]*Bank{}
	bank := func(code string) *Bank {
		b := banks[code]
		if b == nil {
			b = &Bank{Bank: code, codeCounts: map[string]float64{}, buckets: map[float64]float64{}}
			banks[code] = b
		}
		return b
	}
	var intervals []float64
	for i, is := range cur {
		inst := Instance{Addr: is.addr, Up: is.err == nil, At: is.at.UTC(), AtAsked: is.asked.UTC()}
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
				p = &instanceScrape{addr: p.addr, asked: p.asked, at: p.at, index: map[string]float64{}}
			}
		}
		secs := 0.0
		if p != nil {
			secs = is.at.Sub(p.at).Seconds()
			intervals = append(intervals, secs)
			inst.Since, inst.SinceAsked = new(p.at.UTC()), new(p.asked.UTC())
		}
		rate := func(s sample) float64 {
			d := increase(s, p)
			if math.IsNaN(d) || secs <= 0 {
				return 0
			}
			return d / secs
		}
		is.each(metric.BuildInfo, func(s sample) { inst.Version = s.labels["version"] })
		if r, ok := is.gauge(metric.ConfigRevision); ok {
			inst.ConfigRevision = int64(r)
		}
		if l, ok := is.gauge(metric.TimerLeader); ok {
			inst.TimerLeader = l == 1
		}
		if u, ok := is.gauge(metric.EtcdUp); ok {
			inst.EtcdUp = new(u == 1)
		}
		if u, ok := is.gauge(metric.PostgresUp); ok {
			inst.PostgresUp = new(u == 1)
		}
		is.each(metric.InFlight, func(s sample) { inst.InFlight += int(s.value) })
		is.each(metric.Connections, func(s sample) {
			b := bank(s.labels["bank"])
			if st := s.labels["state"]; st == metric.LinkConnected || st == metric.LinkSignedOn {
				b.LinksUp += int(s.value)
			}
		})
		var instRate float64
		is.each(metric.Requests, func(s sample) {
			b, r := bank(s.labels["bank"]), rate(s)
			b.Requests += r
			instRate += r
			if networkMTI(s.labels["mti"]) {
				return
			}
			code := s.labels["response_code"]
			b.financial += r
			b.codeCounts[code] += r
			if metric.Approved(code) {
				b.approved += r
			}
		})
		if p != nil {
			inst.Requests = &instRate
		}
		is.each(metric.RequestDuration+"_bucket", func(s sample) {
			if networkMTI(s.labels["mti"]) {
				return
			}
			le, err := strconv.ParseFloat(s.labels["le"], 64)
			if d := increase(s, p); err == nil && !math.IsNaN(d) {
				bank(s.labels["bank"]).buckets[le] += d
			}
		})
		is.each(metric.DeadlineMisses, func(s sample) { bank(s.labels["bank"]).DeadlineMisses += rate(s) })
		is.each(metric.Redemptions, func(s sample) {
			if b := banks[s.labels["bank"]]; b != nil { // not "admin" (transfers out)
				b.Redemptions += rate(s)
			}
		})
		v.Instances = append(v.Instances, inst)
	}
	if len(intervals) > 0 {
		v.Interval = slices.Max(intervals)
	}
	total := &Bank{Bank: "all", codeCounts: map[string]float64{}, buckets: map[float64]float64{}}
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
	slices.SortFunc(v.Banks, func(a, b Bank) int {
		return cmp.Or(cmp.Compare(b.Requests, a.Requests), cmp.Compare(b.LinksUp, a.LinksUp), strings.Compare(a.Bank, b.Bank))
	})
	if len(v.Banks) > 1 {
		total.finish(v.Interval > 0)
		v.Total = total
	}
	return v
}

// finish turns a bank's sums into rates, shares and quantiles.
func (b *Bank) finish(rated bool) {
	b.Codes = []Share{}
	if !rated {
		return
	}
	if b.financial > 0 {
		b.Approval = new(b.approved / b.financial)
		for c, n := range b.codeCounts {
			if n > 0 {
				b.Codes = append(b.Codes, Share{Code: c, Share: n / b.financial})
			}
		}
		slices.SortFunc(b.Codes, func(x, y Share) int {
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
