package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/goldcard/goldcard/switch/internal/cli"
	"github.com/goldcard/goldcard/switch/internal/daemon"
	"github.com/goldcard/goldcard/switch/internal/tool/bench"
	"github.com/goldcard/goldcard/switch/internal/tool/card"
	configtool "github.com/goldcard/goldcard/switch/internal/tool/config"
	"github.com/goldcard/goldcard/switch/internal/tool/fundsim"
	"github.com/goldcard/goldcard/switch/internal/tool/keys"
	"github.com/goldcard/goldcard/switch/internal/tool/migrate"
	"github.com/goldcard/goldcard/switch/internal/tool/reconcile"
	"github.com/goldcard/goldcard/switch/internal/tool/replay"
	"github.com/goldcard/goldcard/switch/internal/tool/top"
)

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "goldcard",
		Short: "Goldcard: an ISO 8583 switch for fund-linked debit cards",
		Long: `Goldcard answers banks' ISO 8583 authorisations for debit cards tied to a
money-market fund, on a double-entry ledger in PostgreSQL.

Start a switch with "goldcard serve"; manage cards with "goldcard card".`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       daemon.Version(),
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return cli.UsageError{Err: fmt.Errorf("%w (see %s --help)", err, c.CommandPath())}
	})
	root.AddCommand(newServeCommand(), migrate.Command(), configtool.Command(), card.Command(), fundsim.Command(), bench.Command(), replay.Command(), top.Command(), reconcile.Command(), keys.Command())
	cli.RefuseUnknownCommands(root)
	return root
}
