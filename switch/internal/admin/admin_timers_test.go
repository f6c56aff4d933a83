package admin_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// TestRunTimerNow: an operator makes the next day's pending sweep due now
// and the switch runs it at once, not at its hour; a task that is not
// pending, or a request naming none, is refused with a reason.
func TestRunTimerNow(t *testing.T) {
	t.Parallel()
	d := switchtest.Start(t)
	type tasks struct {
		Tasks []struct {
			Kind  string    `json:"kind"`
			Key   string    `json:"key"`
			State string    `json:"state"`
			Due   time.Time `json:"due_at"`
		} `json:"tasks"`
	}
	// The timer's leader schedules the next sweep once elected, which
	// may come after the switch is ready.
	var pending tasks
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		pending = tasks{}
		if st := d.API("GET", "/v1/timers?kind=sweep.day&state=pending", nil, &pending); st != http.StatusOK {
			t.Fatalf("timers: HTTP %d", st)
		}
		if len(pending.Tasks) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pending sweep: %+v", pending)
		}
	}
	key := pending.Tasks[0].Key
	if due := pending.Tasks[0].Due; time.Until(due) < time.Minute {
		t.Skipf("the sweep is due within a minute anyway (%s)", due)
	}
	if st := d.API("POST", "/v1/timers/run", map[string]string{"kind": "sweep.day", "key": key}, nil); st != http.StatusAccepted {
		t.Fatalf("run now: HTTP %d", st)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var done tasks
		d.API("GET", "/v1/timers?kind=sweep.day&state=done", nil, &done)
		if len(done.Tasks) == 1 && done.Tasks[0].Key == key {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sweep of %s made due now has not run: %+v", key, done)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := d.API("POST", "/v1/timers/run", map[string]string{"kind": "sweep.day", "key": key}, nil); st != http.StatusNotFound {
		t.Errorf("running a finished task again: HTTP %d, want 404", st)
	}
	if st := d.API("POST", "/v1/timers/run", map[string]string{"kind": "sweep.day"}, nil); st != http.StatusBadRequest {
		t.Errorf("no key: HTTP %d, want 400", st)
	}
}
