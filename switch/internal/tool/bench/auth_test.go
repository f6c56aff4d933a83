package bench_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/goldcard/goldcard/switch/internal/switchtest"
	"github.com/goldcard/goldcard/switch/internal/tool/bench"
)

func TestMain(m *testing.M) { switchtest.Main(m) }

// TestPacedAuth: bench auth --rate sends at a fixed rate and reports the
// rate it was asked for, with its percentiles in order.
func TestPacedAuth(t *testing.T) {
	t.Parallel()
	d := switchtest.Start(t)
	out, err := switchtest.CLI(t, "", "bench", "auth", "--addr", d.Bank, "--admin", "http://"+d.Admin,
		"--cards", "4", "--conns", "1", "--rate", "40", "--duration", "1s", "--json")
	var results []bench.Result
	if err == nil {
		err = json.Unmarshal([]byte(out[strings.Index(out, "["):]), &results)
	}
	if err != nil || len(results) != 1 {
		t.Fatalf("bench auth --rate: %v\n%s", err, out)
	}
	r := results[0]
	if r.Rate != 40 || r.Concurrency != 0 || r.Requests == 0 || r.Errors != 0 {
		t.Fatalf("paced run: %+v", r)
	}
	if !(r.P50ms <= r.P99ms && r.P99ms <= r.P999ms && r.P999ms <= r.Maxms) {
		t.Fatalf("percentiles out of order: %+v", r)
	}
	if out, err := switchtest.CLI(t, "", "bench", "auth", "--rate", "0"); err == nil || !strings.Contains(out, "--rate") {
		t.Fatalf("--rate 0: %v\n%s", err, out)
	}
}
