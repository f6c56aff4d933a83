package switchtest

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/config/configtest"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
	"github.com/goldcard/goldcard/switch/internal/daemon"
)

// StartServer runs a switch in this process, for tests that need the race
// detector on the link code, with extra config keys.
func StartServer(t *testing.T, kvs ...string) (*daemon.Switch, *ledger.Ledger) {
	t.Helper()
	return StartServerWith(t, daemon.Parts{}, kvs...)
}

// StartServerWith is StartServer with parts of o (a locker, an election,
// another switch's pool to share its database); the config, log and admin
// address are its own, and the pool too unless o names one.
func StartServerWith(t *testing.T, o daemon.Parts, kvs ...string) (*daemon.Switch, *ledger.Ledger) {
	t.Helper()
	var l *ledger.Ledger
	pool := o.Pool
	if pool == nil {
		l, pool = ledgertest.New(t)
	} else {
		l = ledgertest.Open(t, pool)
	}
	bank := config.DefaultBank("127.0.0.1:0")
	bank.MaxInFlight = 8
	bank.AuthTimeout = config.Duration(8 * time.Second) // see TestAuthTimeout
	snap := configtest.Snapshot(t, bank, kvs...)
	log := slog.New(slog.NewTextHandler(LogWriter{t}, nil))
	o.Config, o.Pool, o.Log, o.Admin, o.KEK = config.NewStore(snap), pool, log, "127.0.0.1:0", ledgertest.KEK
	// No config center: the switch is known by its database alone.
	var err error
	if o.Identity, err = daemon.LocalIdentity(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	srv, err := daemon.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv, l
}

// LogWriter writes a switch's log lines to the test's log.
type LogWriter struct{ T testing.TB }

// Write logs one line.
func (w LogWriter) Write(p []byte) (int, error) {
	w.T.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// ConnectDB connects to the database at dsn for the length of the test.
func ConnectDB(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}
