package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/prometheus/client_golang/prometheus"
)

// TestAdminRefusals: a wrong token is told apart from a missing one, in
// the answer, the metric and the log; the log has a line per peer at most
// once a second, the next line counting those held back, and never the
// token or a PAN of the path.
func TestAdminRefusals(t *testing.T) {
	t.Parallel()
	const (
		token = "right-token-5150"
		wrong = "wrong-token-6160"
		pan   = "6228480000000961"
	)
	var logs syncBuffer
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "refused"}, []string{"reason"})
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	guard := newAdminGuard(Auth{Token: token}, refused, slog.New(slog.NewJSONHandler(&logs, nil)), ok)

	call := func(peer, bearer string) (int, string, string) {
		t.Helper()
		r := httptest.NewRequest(http.MethodPut, "/v1/cards/"+pan+"/status", strings.NewReader(`{}`))
		r.RemoteAddr = peer
		if bearer != "" {
			r.Header.Set("Authorization", "Bearer "+bearer)
		}
		w := httptest.NewRecorder()
		guard.ServeHTTP(w, r)
		var e struct{ Error string }
		_ = json.Unmarshal(w.Body.Bytes(), &e)
		return w.Code, e.Error, w.Header().Get("WWW-Authenticate")
	}
	if code, _, _ := call("192.0.2.1:1000", token); code != http.StatusNoContent {
		t.Fatalf("the right token: HTTP %d", code)
	}
	if code, reason, challenge := call("192.0.2.1:1001", ""); code != 401 || !strings.HasPrefix(reason, "missing bearer token") || !strings.HasPrefix(challenge, "Bearer ") {
		t.Errorf("no token: HTTP %d %q %q", code, reason, challenge)
	}
	if code, reason, challenge := call("192.0.2.1:1002", wrong); code != 401 || reason != "wrong bearer token" || !strings.Contains(challenge, "invalid_token") {
		t.Errorf("a wrong token: HTTP %d %q %q", code, reason, challenge)
	}
	for header, want := range map[string]int{
		"bearer " + token: http.StatusNoContent, "BEARER  " + token: http.StatusNoContent,
		"Bearer ": 401, "Basic " + token: 401, token: 401,
	} {
		r := httptest.NewRequest(http.MethodPut, "/v1/cards/"+pan+"/status", nil)
		r.RemoteAddr = "192.0.2.9:1"
		r.Header.Set("Authorization", header)
		w := httptest.NewRecorder()
		guard.ServeHTTP(w, r)
		if w.Code != want || want == 401 && !strings.Contains(w.Body.String(), "missing bearer token") {
			t.Errorf("Authorization: %s: HTTP %d %s, want %d", header, w.Code, w.Body, want)
		}
	}

	// A burst from one host, over several ports, and one from another.
	const burst = 20
	start := time.Now()
	for i := range burst {
		call(fmt.Sprintf("198.51.100.7:%d", 2000+i), wrong)
	}
	burstTook := time.Since(start)
	call("[2001:db8::1]:3000", "")
	// Once a second has passed, the host's next refusal is logged with
	// the count of those held back.
	time.Sleep(1100 * time.Millisecond)
	call("198.51.100.7:4000", "")

	type line struct {
		Level, Msg, Peer, Method, Path, Reason string
		Suppressed                             int
	}
	var lines []line
	for _, raw := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var l line
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			t.Fatalf("log line %q: %v", raw, err)
		}
		lines = append(lines, l)
	}
	byPeer := map[string][]line{}
	for _, l := range lines {
		if l.Level != "WARN" || l.Msg != "admin API request refused" || l.Method != "PUT" || l.Path != "/v1/cards/622848******0961/status" {
			t.Errorf("log line %+v", l)
		}
		byPeer[l.Peer] = append(byPeer[l.Peer], l)
	}
	if got := byPeer["192.0.2.1"]; len(got) != 1 || got[0].Reason != refusedMissing {
		t.Errorf("192.0.2.1's lines: %+v (its second refusal, within the second, is held back)", got)
	}
	if got := byPeer["2001:db8::1"]; len(got) != 1 || got[0].Reason != refusedMissing {
		t.Errorf("2001:db8::1's lines: %+v", got)
	}
	host := byPeer["198.51.100.7"]
	accounted := 0
	for _, l := range host {
		accounted += 1 + l.Suppressed
	}
	last := host[len(host)-1]
	if accounted != burst+1 || last.Reason != refusedMissing || host[0].Reason != refusedWrong {
		t.Errorf("198.51.100.7's lines %+v account for %d refusals, want %d", host, accounted, burst+1)
	}
	if burstTook < time.Second && (len(host) != 2 || last.Suppressed != burst-1) {
		t.Errorf("a burst of %d in %v logged as %+v, want one line and then one counting %d held back", burst, burstTook, host, burst-1)
	}
	if v := counterValue(t, refused, refusedWrong); v != burst+1 {
		t.Errorf("wrong tokens counted %v, want %d", v, burst+1)
	}
	if v := counterValue(t, refused, refusedMissing); v != 6 {
		t.Errorf("missing tokens counted %v, want 6", v)
	}
	for _, secret := range []string{token, wrong, pan} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds %s:\n%s", secret, logs.String())
		}
	}
}

// counterValue reads one series of a counter vector.
func counterValue(t *testing.T, c *prometheus.CounterVec, labels ...string) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.WithLabelValues(labels...).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
