package top

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/goldcard/goldcard/switch/internal/client"
)

// scraper reads the metrics of a set of instances.
type scraper struct {
	client *http.Client
	addrs  []string
}

// scrape is every instance's metrics at one moment.
type scrape []*instanceScrape

// instanceScrape is one instance's metrics, flattened: counter and gauge
// values, and histograms as their _bucket (with le), _count and _sum series.
type instanceScrape struct {
	addr string
	// asked and at are when the scrape was sent and when its answer came:
	// the switch read its counters in between.
	asked, at time.Time
	err       error
	series    []sample
	index     map[string]float64 // by sample.key
}

type sample struct {
	name   string
	labels map[string]string
	key    string
	value  float64
}

func (s *scraper) scrape(ctx context.Context) scrape {
	out := make(scrape, len(s.addrs))
	var wg sync.WaitGroup
	for i, addr := range s.addrs {
		wg.Go(func() {
			is := &instanceScrape{addr: addr, asked: time.Now()}
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

func (s *scraper) fetch(ctx context.Context, addr string) (io.Reader, error) {
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
