package link

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/config/configtest"
	"github.com/goldcard/goldcard/iso"
)

// answerAll is a handler that approves every request it is handed, and
// answers what it is told to refuse with 96: the links are under test,
// not the decisions.
type answerAll struct{}

type answered struct{ network string }

func (answered) Seq() int64 { return 0 }
func (a answered) SignOn() int {
	switch a.network {
	case "001":
		return 1
	case "002":
		return -1
	}
	return 0
}
func (answered) Answered(string, time.Time, bool, bool) {}

func (answerAll) Handle(_ context.Context, _ *config.Bank, d *iso.Dialect, _ config.Limits, msg *iso8583.Message, _ []byte) ([]byte, answered) {
	return respond(d, msg, "00"), answered{network: func() string { s, _ := msg.GetString(70); return s }()}
}

func (answerAll) Refuse(_ *config.Bank, d *iso.Dialect, msg *iso8583.Message, _ error) ([]byte, answered) {
	return respond(d, msg, "96"), answered{}
}

func (answerAll) Failed(error) answered { return answered{} }

func respond(d *iso.Dialect, msg *iso8583.Message, code string) []byte {
	resp, err := iso.Respond(d, msg)
	if err != nil {
		return nil
	}
	_ = resp.Field(39, code)
	b, _ := resp.Pack()
	return b
}

// testListeners are listeners of the default bank on a free port, with
// extra config keys, handing requests to answerAll; nothing listens until
// Apply.
func testListeners(t *testing.T, kvs ...string) *Listeners {
	t.Helper()
	return testListenersWith(t, answerAll{}, kvs...)
}

// testListenersWith is testListeners handing requests to h.
func testListenersWith(t *testing.T, h Handler[answered], kvs ...string) *Listeners {
	t.Helper()
	snap := configtest.Snapshot(t, config.DefaultBank("127.0.0.1:0"), kvs...)
	s := New(Options{Config: config.NewStore(snap), Identity: "0123456789abcdef", Log: slog.New(slog.NewTextHandler(testWriter{t}, nil))}, h)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}
