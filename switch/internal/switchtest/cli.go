package switchtest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/goldcard/goldcard/locks"
)

// CLI runs a goldcard command, with stdin, and returns its output and error.
func CLI(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = append(os.Environ(), KEKEnv)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// FreeAddr is a free loopback address.
func FreeAddr(t *testing.T) string {
	t.Helper()
	port, err := locks.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}
