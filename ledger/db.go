package ledger

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// versionTable records which migrations have been applied.
const versionTable = "public.schema_version"

// Migrate applies the embedded schema migrations that the database lacks.
// Instances starting together take turns on an advisory lock.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	defer conn.Release()
	m, err := migrate.NewMigrator(ctx, conn.Conn(), versionTable)
	if err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	if err := m.LoadMigrations(sub); err != nil {
		return fmt.Errorf("loading migrations: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	return nil
}

// SchemaVersion returns the number of the last migration applied and the
// number of the newest one this build carries.
func SchemaVersion(ctx context.Context, pool *pgxpool.Pool) (applied, newest int32, err error) {
	names, err := migrate.FindMigrations(mustSub())
	if err != nil {
		return 0, 0, err
	}
	err = pool.QueryRow(ctx, "SELECT version FROM "+versionTable).Scan(&applied)
	if code, _ := pgCode(err); code == "42P01" { // no version table yet
		err = nil
	}
	return applied, int32(len(names)), err
}

func mustSub() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return sub
}

// CreateDatabase creates the database named in dsn if it does not exist,
// connecting to the server's "postgres" database to do so.
func CreateDatabase(ctx context.Context, dsn string) (created bool, err error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return false, fmt.Errorf("parsing database URL: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		conn.Close(ctx)
		return false, nil
	}
	if code, _ := pgCode(err); code != codeInvalidCatalogName {
		return false, fmt.Errorf("connecting to %s: %w", Redact(dsn), err)
	}
	name := cfg.Database
	admin := cfg.Copy()
	admin.Database = "postgres"
	aconn, err := pgx.ConnectConfig(ctx, admin)
	if err != nil {
		return false, fmt.Errorf("connecting to the server to create database %s: %w", name, err)
	}
	defer aconn.Close(ctx)
	_, err = aconn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	if code, _ := pgCode(err); code == codeDuplicateDatabase {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("creating database %s: %w", name, err)
	}
	return true, nil
}

// Redact returns dsn without its password, for messages.
func Redact(dsn string) string {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "(unparsable database URL)"
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}
