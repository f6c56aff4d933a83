// Package ledgertest gives each test its own fresh PostgreSQL database.
//
// The server is the one at $GOLDCARD_TEST_DB (a URL whose database is used
// only to connect), by default postgres://postgres@127.0.0.1:5432/postgres.
// Each database is dropped when its test ends, after the ledger's books
// have been audited.
package ledgertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goldcard/goldcard/ledger"
)

// DefaultServer is used when $GOLDCARD_TEST_DB is not set.
const DefaultServer = "postgres://postgres@127.0.0.1:5432/postgres"

func server() string {
	if s := os.Getenv("GOLDCARD_TEST_DB"); s != "" {
		return s
	}
	return DefaultServer
}

// NewDatabase creates an empty database for t and returns its URL. When t
// ends, the ledger in it (if migrated) is audited and the database dropped.
func NewDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, admin := connectServer(ctx, t)
	defer admin.Close(ctx)
	name, dsn := newName(t, cfg)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("ledgertest: creating database: %v", err)
	}
	dbcfg := cfg.Copy()
	dbcfg.Database = name
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if !t.Failed() {
			auditIfMigrated(ctx, t, dbcfg)
		}
		drop(ctx, t, cfg, name)
	})
	return dsn
}

// UnusedDatabase returns the URL of a database that does not exist, for
// tests of what creates one (or must not). Should it come to exist, it is
// dropped when t ends.
func UnusedDatabase(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, admin := connectServer(ctx, t)
	admin.Close(ctx)
	name, dsn := newName(t, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		drop(ctx, t, cfg, name)
	})
	return dsn
}

// DatabaseExists reports whether the database a URL names exists.
func DatabaseExists(t testing.TB, dsn string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("ledgertest: %v", err)
	}
	_, admin := connectServer(ctx, t)
	defer admin.Close(ctx)
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, db.Database).Scan(&exists); err != nil {
		t.Fatalf("ledgertest: %v", err)
	}
	return exists
}

// connectServer connects to the test server's own database.
func connectServer(ctx context.Context, t testing.TB) (*pgx.ConnConfig, *pgx.Conn) {
	t.Helper()
	cfg, err := pgx.ParseConfig(server())
	if err != nil {
		t.Fatalf("ledgertest: parsing $GOLDCARD_TEST_DB: %v", err)
	}
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("ledgertest: PostgreSQL is not reachable at %s (run `make test`, which starts it): %v", ledger.Redact(server()), err)
	}
	return cfg, admin
}

// newName makes up a database name for t, and its URL on the server cfg.
func newName(t testing.TB, cfg *pgx.ConnConfig) (name, dsn string) {
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	name = "goldcard_test_" + sanitize(t.Name()) + "_" + hex.EncodeToString(suffix[:])
	dsn = fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
	if cfg.Password != "" {
		dsn = fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Password, cfg.Host, cfg.Port, name)
	}
	return name, dsn
}

func drop(ctx context.Context, t testing.TB, cfg *pgx.ConnConfig, name string) {
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Errorf("ledgertest: dropping %s: %v", name, err)
		return
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Errorf("ledgertest: dropping %s: %v", name, err)
	}
}

// New returns a pool on a fresh, migrated database and a ledger on it.
func New(t testing.TB) (*ledger.Ledger, *pgxpool.Pool) {
	t.Helper()
	dsn := NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("ledgertest: %v", err)
	}
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("ledgertest: %v", err)
	}
	// Registered after NewDatabase's cleanup, so it runs before it.
	t.Cleanup(pool.Close)
	if err := ledger.Migrate(ctx, pool); err != nil {
		t.Fatalf("ledgertest: %v", err)
	}
	return ledger.New(pool), pool
}

func auditIfMigrated(ctx context.Context, t testing.TB, cfg *pgx.ConnConfig) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Errorf("ledgertest: auditing: %v", err)
		return
	}
	defer conn.Close(ctx)
	var migrated bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('public.transfers') IS NOT NULL`).Scan(&migrated); err != nil || !migrated {
		return
	}
	if err := ledger.Audit(ctx, conn); err != nil {
		t.Errorf("ledgertest: after the test: %v", err)
	}
}

func sanitize(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() >= 30 {
			break
		}
	}
	return b.String()
}
