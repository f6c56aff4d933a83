package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// usageError is a command line the command cannot run; it exits 2.
type usageError struct{ error }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

func newRootCommand(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "goldcard",
		Short: "Goldcard: an ISO 8583 switch for fund-linked debit cards",
		Long: `Goldcard answers banks' ISO 8583 authorisations for debit cards tied to a
money-market fund, on a double-entry ledger in PostgreSQL.

Start a switch with "goldcard serve"; manage cards with "goldcard card".`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see %s --help)", err, c.CommandPath())}
	})
	root.AddCommand(newServeCommand(), newMigrateCommand(), newConfigCommand(), newCardCommand(), newFundsimCommand(), newBenchCommand(), newReplayCommand(), newTopCommand())
	refuseUnknownCommands(root)
	return root
}

// refuseUnknownCommands makes every command that only groups others (the
// root, card, config, bench) answer a word that is none of them with a
// usage error. Cobra would print the group's help and exit 0 for all but
// the root, and exit 1 for the root, so a script with a typo would carry
// on as if it had worked. Without a word, a group prints its help.
func refuseUnknownCommands(c *cobra.Command) {
	if c.HasSubCommands() && !c.Runnable() {
		c.Args, c.SuggestionsMinimumDistance = unknownCommand, 2
		c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	}
	for _, sub := range c.Commands() {
		refuseUnknownCommands(sub)
	}
}

// unknownCommand is the Args of a group: any word is not one of its
// commands, or cobra would have run that one.
func unknownCommand(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	hint := ""
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		hint = fmt.Sprintf("; did you mean %s?", strings.Join(s, " or "))
	}
	return usageError{fmt.Errorf("unknown command %q for %s%s (see %s --help)", args[0], c.CommandPath(), hint, c.CommandPath())}
}

// noArgs refuses positional arguments with a usage error.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("%s takes no arguments, got %q (see --help)", c.CommandPath(), args)}
	}
	return nil
}

// newLogger returns the process logger: text or JSON on stderr.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", level)}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Errorf("--log-format %q: want text or json", format)}
}

// defaultDB is the database used when --db is not given.
func defaultDB() string {
	if v := os.Getenv("GOLDCARD_DB"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/goldcard"
}
