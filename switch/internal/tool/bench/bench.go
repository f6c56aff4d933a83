// Package bench is goldcard bench: it measures a running switch's
// authorisations (auth), how fast a config change reaches every switch
// (config), and how late the timer fires (timer); seed fills a ledger to
// measure them at scale.
package bench

import (
	"github.com/spf13/cobra"
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
