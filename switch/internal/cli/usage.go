package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// UsageError is a command line the command cannot run; it exits 2.
type UsageError struct{ Err error }

func (u UsageError) Error() string { return u.Err.Error() }

func (u UsageError) Unwrap() error { return u.Err }

// ExitCode is the process exit status for a command's error: 2 for a
// UsageError, 1 for any other.
func ExitCode(err error) int {
	var u UsageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// NoArgs refuses positional arguments with a usage error.
func NoArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return UsageError{Err: fmt.Errorf("%s takes no arguments, got %q (see --help)", c.CommandPath(), args)}
	}
	return nil
}

// ExactArgs refuses any number of positional arguments but n with a usage
// error.
func ExactArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return UsageError{Err: fmt.Errorf("%s takes %d argument(s), got %d (see --help)", c.CommandPath(), n, len(args))}
		}
		return nil
	}
}

// RefuseUnknownCommands makes every command under c that only groups
// others (the root, card, config, bench) answer a word that is none of
// them with a usage error. Cobra would print the group's help and exit 0
// for all but the root, and exit 1 for the root, so a script with a typo
// would carry on as if it had worked. Without a word, a group prints its
// help.
func RefuseUnknownCommands(c *cobra.Command) {
	if c.HasSubCommands() && !c.Runnable() {
		c.Args, c.SuggestionsMinimumDistance = unknownCommand, 2
		c.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	}
	for _, sub := range c.Commands() {
		RefuseUnknownCommands(sub)
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
	return UsageError{Err: fmt.Errorf("unknown command %q for %s%s (see %s --help)", args[0], c.CommandPath(), hint, c.CommandPath())}
}
