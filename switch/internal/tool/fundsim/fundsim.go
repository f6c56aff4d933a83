// Package fundsim is goldcard fundsim: a simulated fund company that speaks
// the fund gateway's HTTP protocol, for tests, demos and bank integration.
package fundsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/goldcard/goldcard/fund"
	"github.com/goldcard/goldcard/switch/internal/cli"
)

// Command is goldcard fundsim.
func Command() *cobra.Command {
	var (
		listen, logFormat  string
		latency            time.Duration
		failRate, loseRate float64
	)
	c := &cobra.Command{
		Use:   "fundsim",
		Short: "Run a simulated fund company speaking the fund gateway's HTTP protocol",
		Long: `Run a simulated fund company for tests, demos and bank integration tests,
speaking the protocol of goldcard serve --fund-url:

  POST /redemptions   {"order_id","account","amount","currency"} -> {"order_id","state","reason"}
  GET  /redemptions/ID                                            -> the same, or 404 if unknown
  POST /subscriptions, GET /subscriptions/ID alike.

Orders are idempotent on order_id. Each is decided when it arrives and answered
after --latency, even if the caller has stopped waiting (a late answer); a
share of them is refused (--fail-rate) and a share of requests is lost
(--lose-rate): the connection closes without an answer and the order is
never recorded. State is kept in memory.`,
		Example: "  goldcard fundsim --listen 127.0.0.1:9090 --latency 5s --fail-rate 0.1 --lose-rate 0.1",
		Args:    cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if failRate < 0 || failRate > 1 || loseRate < 0 || loseRate > 1 {
				return cli.UsageError{Err: errors.New("--fail-rate and --lose-rate must be between 0 and 1")}
			}
			log, err := cli.NewLogger(c.ErrOrStderr(), logFormat, "info")
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen: %w", err)
			}
			sim := fund.NewSimulator(fund.SimOptions{Latency: latency, FailRate: failRate, LoseRate: loseRate})
			srv := &http.Server{Handler: fund.Handler(sim, log), ReadHeaderTimeout: 5 * time.Second}
			log.Info("simulated fund company listening", "addr", ln.Addr().String(), "latency", latency, "fail_rate", failRate, "lose_rate", loseRate)
			go func() {
				<-c.Context().Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(sctx)
			}()
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&listen, "listen", "127.0.0.1:9090", "address to serve on")
	fl.DurationVar(&latency, "latency", 100*time.Millisecond, "time to decide an order")
	fl.Float64Var(&failRate, "fail-rate", 0, "share of orders refused, 0 to 1")
	fl.Float64Var(&loseRate, "lose-rate", 0, "share of requests lost without an answer, 0 to 1")
	fl.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	return c
}
