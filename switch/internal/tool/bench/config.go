package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/switch/internal/cli"
	"github.com/goldcard/goldcard/switch/internal/client"
)

// configFlags are the flags of bench config.
type configFlags struct {
	etcd, prefix string
	timeout      time.Duration
	asJSON       bool
}

func configCommand() *cobra.Command {
	var (
		f       configFlags
		changes int
	)
	c := &cobra.Command{
		Use:   "config",
		Short: "Measure how fast a config change reaches every live switch",
		Long: `Put --changes successive changes to the limits key (the quota moves by one fen
each time and is put back at the end) and wait for every live switch to
report each one. Prints p50, p99 and max of the time from sending a change to
each switch having applied it (from the switches' reports; on one host the
clocks agree).`,
		Example: "  goldcard bench config --etcd http://127.0.0.1:2379 --changes 200",
		Args:    cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runConfig(c, f, changes)
		},
	}
	c.Flags().StringVar(&f.etcd, "etcd", "http://127.0.0.1:2379", "etcd URLs, separated by commas")
	c.Flags().StringVar(&f.prefix, "etcd-prefix", "/goldcard/", "prefix of the switch's etcd keys")
	c.Flags().IntVar(&changes, "changes", 200, "changes to put")
	c.Flags().DurationVar(&f.timeout, "timeout", 5*time.Second, "longest wait for one change")
	c.Flags().BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	return c
}

func runConfig(c *cobra.Command, f configFlags, changes int) error {
	cl, err := client.DialEtcd(f.etcd)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := c.Context()
	kvs, _, err := config.Read(ctx, cl, f.prefix)
	if err != nil {
		return err
	}
	original, hadLimits := kvs[config.KeyLimits]
	lim := config.DefaultLimits()
	if hadLimits {
		if err := config.DecodeStrict(original, &lim); err != nil {
			return err
		}
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if hadLimits {
			_, _ = cl.Put(rctx, config.ConfigKey(f.prefix, config.KeyLimits), string(original))
		} else {
			_, _ = cl.Delete(rctx, config.ConfigKey(f.prefix, config.KeyLimits))
		}
	}()
	live, _, err := config.Instances(ctx, cl, f.prefix)
	if err != nil {
		return err
	}
	if len(live) == 0 {
		return errors.New("no live switch reports to this config center")
	}
	var lags []float64
	done := atomic.Int64{}
	stop := cli.Progress(c.ErrOrStderr(), &done, time.Now(), "changes")
	base := lim.RedemptionQuota
	for i := range changes {
		lim.RedemptionQuota = base + int64(i%2) + 1
		v, _ := json.Marshal(lim)
		start := time.Now()
		resp, err := cl.Put(ctx, config.ConfigKey(f.prefix, config.KeyLimits), string(v))
		if err != nil {
			stop()
			return err
		}
		results, err := client.WaitApplied(ctx, cl, f.prefix, live, resp.Header.Revision, start, f.timeout)
		if err != nil {
			stop()
			return err
		}
		for _, r := range results {
			lags = append(lags, r.AfterMS)
		}
		done.Add(1)
	}
	stop()
	slices.Sort(lags)
	pct := func(p float64) float64 { return lags[int(p*float64(len(lags)-1))] }
	res := map[string]any{"switches": len(live), "changes": changes, "p50_ms": pct(.5), "p99_ms": pct(.99), "max_ms": pct(1)}
	if f.asJSON {
		b, _ := json.MarshalIndent(res, "", "  ")
		fmt.Fprintln(c.OutOrStdout(), string(b))
		return nil
	}
	fmt.Fprintf(c.OutOrStdout(), "%d changes x %d switches: applied after p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
		changes, len(live), pct(.5), pct(.99), pct(1))
	return nil
}
