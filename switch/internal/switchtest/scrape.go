package switchtest

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Family is a metric family as a scrape showed it: its kind (counter,
// gauge, histogram...), each label's values, and its series.
type Family struct {
	Kind   string                     // counter, gauge, histogram...
	Labels map[string]map[string]bool // label name -> values
	Series []Series
}

// Series is one series of a family; Value is a histogram's observation
// count.
type Series struct {
	Labels map[string]string
	Value  float64 // a histogram's observation count
}

// Scrape reads the /metrics of the switch whose admin API is at admin.
func Scrape(t *testing.T, admin string) map[string]*Family {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: HTTP %d %v", resp.StatusCode, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := map[string]*Family{}
	for name, f := range fams {
		ef := &Family{Kind: strings.ToLower(f.GetType().String()), Labels: map[string]map[string]bool{}}
		for _, m := range f.GetMetric() {
			s := Series{Labels: map[string]string{},
				Value: m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue() + float64(m.GetHistogram().GetSampleCount())}
			for _, lp := range m.GetLabel() {
				s.Labels[lp.GetName()] = lp.GetValue()
				if ef.Labels[lp.GetName()] == nil {
					ef.Labels[lp.GetName()] = map[string]bool{}
				}
				ef.Labels[lp.GetName()][lp.GetValue()] = true
			}
			ef.Series = append(ef.Series, s)
		}
		out[name] = ef
	}
	return out
}

// Total sums the series of a family (nil: none) that carry the given
// labels.
func Total(f *Family, labels map[string]string) float64 {
	if f == nil {
		return 0
	}
	var sum float64
	for _, s := range f.Series {
		match := true
		for k, v := range labels {
			match = match && s.Labels[k] == v
		}
		if match {
			sum += s.Value
		}
	}
	return sum
}
