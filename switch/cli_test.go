package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestCommandLine: what is not a command line the tool has exits 2 with
// the reason on stderr, as the README promises; help and the version
// exit 0.
func TestCommandLine(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args   []string
		code   int
		stderr string // part of it; "" for none
		stdout string
	}{
		{[]string{"nope"}, 2, `unknown command "nope" for goldcard`, ""},
		{[]string{"tpo"}, 2, "did you mean top?", ""},
		{[]string{"card", "nope"}, 2, `unknown command "nope" for goldcard card`, ""},
		{[]string{"card", "--pan", "6228480000000001", "nope"}, 2, `unknown command "nope" for goldcard card`, ""},
		{[]string{"config", "nope"}, 2, `unknown command "nope" for goldcard config`, ""},
		{[]string{"bench", "nope"}, 2, `unknown command "nope" for goldcard bench`, ""},
		{[]string{"card", "show", "extra"}, 2, "takes no arguments", ""},
		{[]string{"card", "show"}, 2, "--pan is required", ""},
		{[]string{"card", "show", "--bogus"}, 2, "unknown flag: --bogus", ""},
		{[]string{"serve", "--bogus"}, 2, "unknown flag: --bogus", ""},
		{[]string{"--bogus"}, 2, "unknown flag: --bogus", ""},
		{[]string{}, 0, "", "Usage:"},
		{[]string{"card"}, 0, "", "Available Commands:"},
		{[]string{"card", "--help"}, 0, "", "Available Commands:"},
		{[]string{"--version"}, 0, "", "goldcard version"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), c.args, strings.NewReader(""), &stdout, &stderr)
			if code != c.code || !strings.Contains(stderr.String(), c.stderr) || c.stderr == "" && stderr.Len() > 0 ||
				!strings.Contains(stdout.String(), c.stdout) {
				t.Errorf("exit %d, want %d\nstderr: %s\nstdout: %.200s", code, c.code, stderr.String(), stdout.String())
			}
		})
	}
}
