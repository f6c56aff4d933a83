// Package bench is goldcard bench: it measures a running switch's
// authorisations (auth), how fast a config change reaches every switch
// (config), and how late the timer fires (timer).
package bench

import (
	"github.com/spf13/cobra"
)

// Command is goldcard bench and its subcommands auth, config and timer.
func Command() *cobra.Command {
	c := &cobra.Command{
		Use:   "bench",
		Short: "Measure a running switch",
	}
	c.AddCommand(authCommand(), configCommand(), timerCommand())
	return c
}
