// Package ledgertest gives each test its own fresh PostgreSQL database.
//
// The server is the one at $GOLDCARD_TEST_DB (a URL whose database is used
// only to connect), by default postgres://postgres@127.0.0.1:5432/postgres.
// Each database is dropped when its test ends, after the ledger's books
// have been audited.
package ledgertest

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
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
	return Open(t, pool), pool
}

// Open is a ledger on pool, its data keys wrapped under KEK.
func Open(t testing.TB, pool *pgxpool.Pool) *ledger.Ledger {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := ledger.Open(ctx, pool, KEK)
	if err != nil {
		t.Fatalf("ledgertest: %v", err)
	}
	return l
}

// KEK is the key-encryption key of tests' ledgers: AES-256-GCM under a
// key every test knows, named "7e57ce75".
var KEK ledger.KEK = NewKEK(bytes.Repeat([]byte{0x7e}, 32), "7e57ce75")

// NewKEK is a KEK of key, named id.
func NewKEK(key []byte, id string) ledger.KEK {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		panic(err)
	}
	return testKEK{id, aead}
}

type testKEK struct {
	id   string
	aead cipher.AEAD
}

func (k testKEK) ID() string { return k.id }

func (k testKEK) Wrap(key, aad []byte) ([]byte, error) { return k.aead.Seal(nil, nil, key, aad), nil }

func (k testKEK) Unwrap(id string, wrapped, aad []byte) ([]byte, error) {
	if id != k.id {
		return nil, fmt.Errorf("ledgertest: wrapped under KEK %s, not %s", id, k.id)
	}
	return k.aead.Open(nil, nil, wrapped, aad)
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

// Reveals lists each column of the database at pool, of every table in
// its public schema, that holds any of needles: text, JSON and bytea
// columns, as stored (bytea byte for byte, the others as text). A test of
// what the ledger keeps sealed asks it for PANs and keys.
func Reveals(t testing.TB, pool *pgxpool.Pool, needles ...[]byte) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rows, err := pool.Query(ctx, `SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
		JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
		WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
		  AND c.data_type IN ('text', 'bytea', 'json', 'jsonb', 'character varying', 'character', 'ARRAY')
		ORDER BY 1, 2`)
	if err != nil {
		t.Fatalf("ledgertest: listing columns: %v", err)
	}
	type column struct{ table, name, kind string }
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		return c, r.Scan(&c.table, &c.name, &c.kind)
	})
	if err != nil {
		t.Fatalf("ledgertest: listing columns: %v", err)
	}
	var found []string
	for _, c := range cols {
		value := pgx.Identifier{c.name}.Sanitize() + "::text"
		if c.kind == "bytea" {
			value = pgx.Identifier{c.name}.Sanitize()
		}
		for _, n := range needles {
			var hits int
			q := `SELECT count(*) FROM ` + pgx.Identifier{c.table}.Sanitize() + ` WHERE position($1::bytea IN convert_to(` + value + `, 'UTF8')) > 0`
			if c.kind == "bytea" {
				q = `SELECT count(*) FROM ` + pgx.Identifier{c.table}.Sanitize() + ` WHERE position($1::bytea IN ` + value + `) > 0`
			}
			if err := pool.QueryRow(ctx, q, n).Scan(&hits); err != nil {
				t.Fatalf("ledgertest: scanning %s.%s: %v", c.table, c.name, err)
			}
			if hits > 0 {
				found = append(found, fmt.Sprintf("%s.%s (%d rows)", c.table, c.name, hits))
				break
			}
		}
	}
	return found
}
