package admin_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// TestRunTimerNow: an operator makes the next pending sweep due now and
// the switch runs it at once, not at its hour, if its day has begun, and
// otherwise puts it back to its hour; a task that is not pending, or a
// request naming none, is refused with a reason.
func TestRunTimerNow(t *testing.T) {
	t.Parallel()
	d := switchtest.Start(t)
	type tasks struct {
		Tasks []struct {
			Kind      string    `json:"kind"`
			Key       string    `json:"key"`
			State     string    `json:"state"`
			Due       time.Time `json:"due_at"`
			Attempts  int       `json:"attempts"`
			LastError string    `json:"last_error"`
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
	// The next sweep is of today in Shanghai before its hour, else of
	// tomorrow: today's runs now; tomorrow's is refused until its day and
	// goes back to its hour.
	shanghai, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	today := time.Now().In(shanghai).Format(time.DateOnly)
	if st := d.API("POST", "/v1/timers/run", map[string]string{"kind": "sweep.day", "key": key}, nil); st != http.StatusAccepted {
		t.Fatalf("run now: HTTP %d", st)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var all tasks
		d.API("GET", "/v1/timers?kind=sweep.day", nil, &all)
		var state, lastError string
		var due time.Time
		for _, task := range all.Tasks {
			if task.Key == key && task.Attempts > 0 {
				state, lastError, due = task.State, task.LastError, task.Due
			}
		}
		// Keys are dates, which order as text. Midnight in Shanghai may
		// pass while the test runs: a sweep whose day has begun by now may
		// have run, and one whose day had not begun when it was made due
		// may have been refused.
		if state == "done" && key <= time.Now().In(shanghai).Format(time.DateOnly) {
			if st := d.API("POST", "/v1/timers/run", map[string]string{"kind": "sweep.day", "key": key}, nil); st != http.StatusNotFound {
				t.Errorf("running a finished task again: HTTP %d, want 404", st)
			}
			break
		}
		if key > today && state == "pending" && strings.Contains(lastError, "has not begun") {
			// Back to its hour, give or take the moments between the
			// refusal and its recording.
			if off := due.Sub(pending.Tasks[0].Due); off < -10*time.Second || off > 10*time.Second {
				t.Errorf("tomorrow's sweep refused today went back to %s, not to its hour %s", due, pending.Tasks[0].Due)
			}
			break
		}
		if state != "" && state != "pending" {
			t.Fatalf("the sweep of %s (today %s) ended %s: %s", key, today, state, lastError)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sweep of %s made due now (today %s) has not run: %+v", key, today, all)
		}
	}
	if st := d.API("POST", "/v1/timers/run", map[string]string{"kind": "sweep.day"}, nil); st != http.StatusBadRequest {
		t.Errorf("no key: HTTP %d, want 400", st)
	}
}
