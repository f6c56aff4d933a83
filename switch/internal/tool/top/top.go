// Package top is goldcard top: a live view of one or more switches, per
// bank, from the metrics their admin APIs serve. It scrapes each instance
// (scrape.go), computes rates, shares and latency quantiles between two
// scrapes (view.go) and draws them to fit a terminal (render.go).
package top

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/goldcard/goldcard/switch/internal/cli"
)

type flags struct {
	addrs    []string
	once     bool
	asJSON   bool
	interval time.Duration
	timeout  time.Duration
}

// Command is goldcard top.
func Command() *cobra.Command {
	var f flags
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
			return run(ctx, c.OutOrStdout(), f)
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

func run(ctx context.Context, w io.Writer, f flags) error {
	s := &scraper{client: &http.Client{Timeout: f.timeout}, addrs: f.addrs}
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
		fmt.Fprint(w, "\x1b[H\x1b[2J"+render(newView(prev, nil), width, height-1))
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
		v := newView(cur, prev)
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
			fmt.Fprint(w, "\x1b[H\x1b[2J"+render(v, width, height-1)) // the last newline would scroll
		default:
			// Scripts get whole frames, never cut to a screen's height.
			fmt.Fprint(w, render(v, 80, 0))
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
