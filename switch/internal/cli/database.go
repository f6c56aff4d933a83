package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goldcard/goldcard/ledger"
)

// DefaultDB is the database used when --db is not given: $GOLDCARD_DB, or
// the local PostgreSQL's goldcard database.
func DefaultDB() string {
	if v := os.Getenv("GOLDCARD_DB"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/goldcard"
}

// OpenDatabase creates the database at dsn if missing, connects with at
// most size connections and migrates the ledger's schema; each of first
// runs before anything is changed, and an error of one stops it.
func OpenDatabase(ctx context.Context, dsn string, size int32, log interface{ Info(string, ...any) }, first ...func(context.Context, *pgxpool.Pool) error) (*pgxpool.Pool, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	created, err := ledger.CreateDatabase(cctx, dsn)
	if err != nil {
		return nil, err
	}
	if created {
		log.Info("database created", "db", ledger.Redact(dsn))
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, UsageError{Err: fmt.Errorf("--db: %w", err)}
	}
	cfg.MaxConns = size
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", ledger.Redact(dsn), err)
	}
	for _, f := range first {
		if err := f(cctx, pool); err != nil {
			pool.Close()
			return nil, err
		}
	}
	if err := ledger.Migrate(cctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}
