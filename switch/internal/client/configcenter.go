package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/goldcard/goldcard/config"
)

// DialEtcd is a client of the config center at endpoints (URLs separated
// by commas).
func DialEtcd(endpoints string) (*clientv3.Client, error) {
	cl, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(endpoints, ","), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd at %s: %w", endpoints, err)
	}
	return cl, nil
}

// Applied is one switch's answer to a config change.
type Applied struct {
	ID      string  `json:"id"`
	State   string  `json:"state"` // applied, rejected, silent
	AfterMS float64 `json:"after_ms,omitempty"`
	Error   string  `json:"error,omitempty"`
	// Warning is a problem putting an applied change into effect.
	Warning string `json:"warning,omitempty"`
}

// WaitApplied follows the instances' reports under prefix until each of
// live has applied or refused revision rev, or timeout passes. The time
// each took is from start (when the change was sent) to its report's
// applied_at. The error names every switch that refused or did not report.
func WaitApplied(ctx context.Context, cl *clientv3.Client, prefix string, live []config.Report, rev int64, start time.Time, timeout time.Duration) ([]Applied, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pending := map[string]bool{}
	for _, r := range live {
		pending[r.ID] = true
	}
	var out []Applied
	check := func(r config.Report) {
		if !pending[r.ID] {
			return
		}
		switch {
		case r.Revision >= rev:
			out = append(out, Applied{ID: r.ID, State: "applied", AfterMS: float64(r.AppliedAt.Sub(start).Microseconds()) / 1000, Warning: r.Warning})
		case r.Rejected >= rev:
			out = append(out, Applied{ID: r.ID, State: "rejected", Error: r.Error})
		default:
			return
		}
		delete(pending, r.ID)
	}
	wch := cl.Watch(ctx, prefix+"instances/", clientv3.WithPrefix(), clientv3.WithRev(rev))
	// Reports written before the watch started are in the current state.
	if now, _, err := config.Instances(ctx, cl, prefix); err == nil {
		for _, r := range now {
			check(r)
		}
	}
	for len(pending) > 0 {
		select {
		case resp, ok := <-wch:
			if !ok {
				break
			}
			for _, ev := range resp.Events {
				var r config.Report
				if json.Unmarshal(ev.Kv.Value, &r) == nil {
					check(r)
				}
			}
			continue
		case <-ctx.Done():
		}
		break
	}
	var errs []error
	for id := range pending {
		out = append(out, Applied{ID: id, State: "silent"})
		errs = append(errs, fmt.Errorf("switch %s did not report revision %d within the timeout", id, rev))
	}
	for _, a := range out {
		if a.State == "rejected" {
			errs = append(errs, fmt.Errorf("switch %s refused the change: %s", a.ID, a.Error))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, errors.Join(errs...)
}

// PrintApplied writes each switch's report of a change as a table.
func PrintApplied(w io.Writer, results []Applied) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SWITCH\tSTATE\tAFTER")
	for _, a := range results {
		after := "-"
		if a.State == "applied" {
			after = fmt.Sprintf("%.2f ms", a.AfterMS)
		}
		line := fmt.Sprintf("%s\t%s\t%s", a.ID, a.State, after)
		if problem := a.Error + a.Warning; problem != "" {
			line += "\t" + strings.ReplaceAll(problem, "\n", "; ")
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}
