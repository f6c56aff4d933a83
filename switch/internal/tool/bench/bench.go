// Package bench is goldcard bench: it measures a running switch's
// authorisations (auth), how fast a config change reaches every switch
// (config), and how late the timer fires (timer); seed fills a ledger to
// measure them at scale.
package bench

import (
	"context"
	"io"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/goldcard/goldcard/switch/internal/cli"
)

// Command is goldcard bench and its subcommands auth, config, seed and timer.
func Command() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure a running switch",
	}
	c.AddCommand(authCommand(), configCommand(), seedCommand(), timerCommand())
	return c
}

// openQuietly opens (and migrates) the database of a bench command, whose
// own log goes nowhere: the command prints its results, not its steps.
func openQuietly(ctx context.Context, dsn string, conns int32) (*pgxpool.Pool, *slog.Logger, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool, err := cli.OpenDatabase(ctx, dsn, conns, log)
	return pool, log, err
}
