package switchtest

import (
	"fmt"
	"net/http"
	"os/exec"
	"testing"

	"github.com/goldcard/goldcard/locks"
)

// StartFundsim runs goldcard fundsim on a free port and returns its URL.
func StartFundsim(t *testing.T, port int, args ...string) (string, *exec.Cmd) {
	t.Helper()
	if port == 0 {
		var err error
		if port, err = locks.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(Binary(t), append([]string{"fundsim", "--listen", addr}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	WaitFor(t, "fundsim to listen", func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return "http://" + addr, cmd
}
