// Package migrate is goldcard migrate: it creates the ledger's database if
// missing and applies its schema migrations, as a switch does when it
// starts.
package migrate

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/internal/cli"
)

// Command is goldcard migrate.
func Command() *cobra.Command {
	var db string
	c := &cobra.Command{
		Use:   "migrate",
		Short: "Create the database if missing and apply the ledger's schema migrations",
		Args:  cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			log, _ := cli.NewLogger(c.ErrOrStderr(), "text", "info")
			pool, err := cli.OpenDatabase(c.Context(), db, 2, log)
			if err != nil {
				return err
			}
			defer pool.Close()
			applied, newest, err := ledger.SchemaVersion(c.Context(), pool)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "schema at version %d of %d\n", applied, newest)
			return nil
		},
	}
	c.Flags().StringVar(&db, "db", cli.DefaultDB(), "PostgreSQL URL (default $GOLDCARD_DB)")
	return c
}
