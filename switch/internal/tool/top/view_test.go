package top

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestBucketQuantile(t *testing.T) {
	inf := math.Inf(1)
	for _, c := range []struct {
		q       float64
		buckets map[float64]float64
		want    float64
		ok      bool
	}{
		{0.5, map[float64]float64{0.001: 0, 0.002: 50, 0.005: 100, inf: 100}, 0.002, true},
		{0.5, map[float64]float64{0.001: 0, 0.002: 0, 0.005: 100, inf: 100}, 0.0035, true},
		{0.99, map[float64]float64{0.001: 90, 0.002: 95, 0.005: 98, inf: 100}, 0.005, true}, // in +Inf: the top bound
		{0.5, map[float64]float64{0.001: 40, inf: 40}, 0.0005, true},
		{0.5, map[float64]float64{0.001: 0, inf: 0}, 0, false},
		{0.5, map[float64]float64{0.001: 5}, 0, false}, // no +Inf bucket
	} {
		got, ok := bucketQuantile(c.q, c.buckets)
		if ok != c.ok || math.Abs(got-c.want) > 1e-12 {
			t.Errorf("bucketQuantile(%v, %v) = %v, %v; want %v, %v", c.q, c.buckets, got, ok, c.want, c.ok)
		}
	}
}

// TestTopViewFromScrapes: rates, shares and a counter reset, from two
// scrapes of two instances given as exposition text; the frame fits a
// 80x24 screen however many banks there are.
func TestTopViewFromScrapes(t *testing.T) {
	expo := func(approved, declined, echo, miss float64, inst int) string {
		return fmt.Sprintf(`# TYPE goldcard_requests_total counter
goldcard_requests_total{bank="ICBC",mti="0200",processing_code="00",response_code="00"} %v
goldcard_requests_total{bank="ICBC",mti="0200",processing_code="00",response_code="51"} %v
goldcard_requests_total{bank="ICBC",mti="0800",processing_code="none",response_code="00"} %v
# TYPE goldcard_deadline_misses_total counter
goldcard_deadline_misses_total{bank="ICBC",stage="fund"} %v
# TYPE goldcard_connections gauge
goldcard_connections{bank="ICBC",state="signed_on"} 2
goldcard_connections{bank="ICBC",state="draining"} 1
goldcard_connections{bank="BOC",state="connected"} 0
# TYPE goldcard_timer_leader gauge
goldcard_timer_leader %d
# TYPE goldcard_request_duration_seconds histogram
goldcard_request_duration_seconds_bucket{bank="ICBC",mti="0200",le="0.01"} %v
goldcard_request_duration_seconds_bucket{bank="ICBC",mti="0200",le="+Inf"} %v
goldcard_request_duration_seconds_sum{bank="ICBC",mti="0200"} 1
goldcard_request_duration_seconds_count{bank="ICBC",mti="0200"} %v
`, approved, declined, echo, miss, inst, approved+declined, approved+declined, approved+declined)
	}
	at := time.Now()
	mk := func(i int, text string, at time.Time) *instanceScrape {
		is := &instanceScrape{addr: fmt.Sprintf("10.0.0.%d:8080", i), at: at}
		if err := is.parse(strings.NewReader(text)); err != nil {
			t.Fatal(err)
		}
		return is
	}
	prev := scrape{mk(1, expo(100, 10, 5, 0, 1), at), mk(2, expo(500, 0, 0, 0, 0), at)}
	// Instance 2 restarted: its counters start again from zero.
	cur := scrape{mk(1, expo(190, 20, 7, 2, 1), at.Add(2*time.Second)), mk(2, expo(80, 0, 0, 0, 0), at.Add(2*time.Second))}
	v := newView(cur, prev)
	if len(v.Banks) != 2 || v.Banks[0].Bank != "ICBC" || v.Banks[1].Bank != "BOC" || v.Total == nil {
		t.Fatalf("banks %+v", v.Banks)
	}
	b := v.Banks[0]
	// Instance 1: 90+10+2 in 2 s; instance 2: 80 since its restart.
	if b.Requests != 51+40 {
		t.Errorf("requests/s = %v, want 91", b.Requests)
	}
	if b.Approval == nil || math.Abs(*b.Approval-170.0/180) > 1e-9 {
		t.Errorf("approval = %v, want %v (0800 left out)", *b.Approval, 170.0/180)
	}
	if b.DeadlineMisses != 1 || b.LinksUp != 4 {
		t.Errorf("misses %v/s, links up %d; want 1 and 4", b.DeadlineMisses, b.LinksUp)
	}
	if b.Codes[0].Code != "00" || b.Codes[1].Code != "51" {
		t.Errorf("codes %+v", b.Codes)
	}

	// Forty banks: the frame still fits, the busiest shown.
	var sb strings.Builder
	sb.WriteString("# TYPE goldcard_requests_total counter\n")
	for i := range 40 {
		fmt.Fprintf(&sb, "goldcard_requests_total{bank=\"BANK%02d\",mti=\"0200\",processing_code=\"00\",response_code=\"00\"} %d\n", i, i)
	}
	many := newView(scrape{mk(1, sb.String(), at.Add(time.Second))}, scrape{mk(1, "", at)})
	frame := render(many, 80, 24)
	checkFrame(t, frame, 80, 24)
	if !strings.Contains(frame, "BANK39") || strings.Contains(frame, "BANK00") || !strings.Contains(frame, "more banks") {
		t.Errorf("frame of 40 banks:\n%s", frame)
	}
	// First frame: no rates yet.
	first := render(newView(prev, nil), 80, 24)
	if !strings.Contains(first, "rates from the next frame") {
		t.Errorf("first frame:\n%s", first)
	}
}

func checkFrame(t *testing.T, frame string, width, height int) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(frame, "\n"), "\n")
	if len(lines) > height {
		t.Errorf("frame of %d lines, more than %d:\n%s", len(lines), height, frame)
	}
	for _, l := range lines {
		if n := utf8.RuneCountInString(l); n > width {
			t.Errorf("line of %d columns, more than %d: %q", n, width, l)
		}
	}
}
