package cli

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/spf13/cobra"
)

func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{errors.New("the switch is down"), 1},
		{UsageError{Err: errors.New("--pan is required")}, 2},
		{fmt.Errorf("card add: %w", UsageError{Err: errors.New("--balance")}), 2},
	} {
		if got := ExitCode(c.err); got != c.want {
			t.Errorf("ExitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

// TestUnknownCommand: a group answers a word that is none of its commands
// with a usage error and a suggestion, and prints its help without one.
func TestUnknownCommand(t *testing.T) {
	root := &cobra.Command{Use: "goldcard", SilenceErrors: true, SilenceUsage: true}
	group := &cobra.Command{Use: "card"}
	group.AddCommand(&cobra.Command{Use: "show", Args: NoArgs, RunE: func(*cobra.Command, []string) error { return nil }})
	root.AddCommand(group)
	RefuseUnknownCommands(root)
	for _, c := range []struct {
		args []string
		want string // "" for no error
	}{
		{[]string{"card", "shwo"}, `unknown command "shwo" for goldcard card; did you mean show? (see goldcard card --help)`},
		{[]string{"card", "show", "extra"}, `goldcard card show takes no arguments, got ["extra"] (see --help)`},
		{[]string{"card"}, ""},
	} {
		root.SetArgs(c.args)
		root.SetOut(io.Discard)
		err := root.Execute()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.args, err)
		case c.want != "" && (err == nil || err.Error() != c.want || ExitCode(err) != 2):
			t.Errorf("%q: %v, want usage error %q", c.args, err, c.want)
		}
	}
}
