package switchtest

import (
	"testing"
	"time"
)

// WaitFor polls cond until it holds, for at most 30s: long enough for a
// busy machine, and a test that waits for an event fails only when it
// does not come.
func WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
