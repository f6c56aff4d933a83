package ledger_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
)

// oldLedger is a database migrated to 007 holding one request answered by
// the build before transaction keys were configurable (its INSERT, without
// a card to keep the books out).
func oldLedger(t *testing.T) (*pgxpool.Pool, *pgxpool.Conn) {
	t.Helper()
	ctx := context.Background()
	dsn := ledgertest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := migrate.NewMigrator(ctx, conn.Conn(), "public.schema_version")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.LoadMigrations(os.DirFS("migrations")); err != nil {
		t.Fatal(err)
	}
	if err := m.MigrateTo(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO requests (bank, acquirer, stan, transmitted, terminal, mti_class, mti, rrn,
			fingerprint, txn_type, amount, response_code, auth_code, response)
		VALUES ('default', '1234', '000042', '1201101010', 'ATM00001', '020', '0200', '000000000042',
			'f', 'purchase', 100, '00', '123456', '0210...')`); err != nil {
		t.Fatal(err)
	}
	return pool, conn
}

// TestUpgradeALedgerWithRequests: the migration that keys requests by
// their bank's fields upgrades a ledger that holds requests (their history
// is guarded against updates), and a switch of the build before it, still
// draining, can go on writing requests: they get the key it would have
// used.
func TestUpgradeALedgerWithRequests(t *testing.T) {
	ctx := context.Background()
	pool, conn := oldLedger(t)
	conn.Release()
	if err := ledger.Migrate(ctx, pool); err != nil {
		t.Fatalf("upgrading a ledger that holds one request: %v", err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO requests (bank, acquirer, stan, transmitted, terminal, mti_class, mti, rrn,
			fingerprint, txn_type, amount, response_code, auth_code, response)
		VALUES ('default', '1234', '000043', '1201101011', 'ATM00001', '020', '0200', '000000000043',
			'f', 'purchase', 100, '00', '123456', '0210...')`); err != nil {
		t.Fatalf("a request written as the build before wrote it: %v", err)
	}
	var legacy int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM requests WHERE legacy AND length(txn_key) = 16`).Scan(&legacy); err != nil || legacy != 2 {
		t.Fatalf("%d requests keyed as before (%v), want 2", legacy, err)
	}
}

// TestRepeatOfARequestAnsweredBeforeTheUpgrade: requests answered before
// keys were configurable have no DE13 and DE12 to compute the default key
// from; a repeat of one (its response lost in the restart) finds it by the
// key it had then, and is not posted a second time.
func TestRepeatOfARequestAnsweredBeforeTheUpgrade(t *testing.T) {
	ctx := context.Background()
	pool, conn := oldLedger(t)
	conn.Release()
	if err := ledger.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	l := ledger.New(pool)
	// Its repeat, on the new build with the default txn_key: the same
	// DE32, DE11, DE7, DE41, DE37, with its DE13 and DE12.
	key := ledger.Key{Bank: "default", Class: "020", Acquirer: "1234", STAN: "000042", Transmitted: "1201101010",
		Terminal: "ATM00001", RRN: "000000000042", LocalDate: "1201", LocalTime: "101010"}
	var prior *ledger.Prior
	if err := l.Do(ctx, func(tx *ledger.Tx) error {
		lk, err := tx.LookupRequest(ctx, ledger.Find{Key: key, Serial: ledger.SerialKey("default", "1234", "000042", "ATM00001"), Day: time.Now()})
		if lk != nil {
			prior = lk.Prior
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if prior == nil {
		t.Fatal("a repeat of a request answered before migration 008 finds nothing under its key: it is decided and posted again")
	}
}

// TestSameKeyRaceIsRetried: two requests under one key whose serials
// differ (a bank whose txn_key leaves out the acquirer: a copy routed with
// another DE32) both find nothing and insert; the one that loses on the
// key is run again and finds the other's answer.
func TestSameKeyRaceIsRetried(t *testing.T) {
	l, pool := ledgertest.New(t)
	ctx := context.Background()
	c := newCard(t, l, 1000, 0)
	r := record(c, "balance", 0)
	r.Key.Fields = []string{ledger.FieldSTAN, ledger.FieldTerminal, ledger.FieldRRN, ledger.FieldLocalDate}
	inserted, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		once := false
		first <- l.Do(ctx, func(tx *ledger.Tx) error {
			if _, err := tx.LookupRequest(ctx, ledger.Find{Key: r.Key, Serial: "via-1234"}); err != nil {
				return err
			}
			if _, err := tx.Save(ctx, r, nil); err != nil {
				return err
			}
			if !once {
				once = true
				close(inserted)
				<-release
			}
			return nil
		})
	}()
	<-inserted
	// The first commits once the copy waits for it on the key.
	go func() {
		waitForLockWait(t, pool)
		close(release)
	}()
	attempts := 0
	var prior *ledger.Prior
	copyKey := r.Key
	copyKey.Acquirer = "5678" // not in this bank's key
	err := l.Do(ctx, func(tx *ledger.Tx) error {
		attempts++
		lk, err := tx.LookupRequest(ctx, ledger.Find{Key: copyKey, Serial: "via-5678"})
		if err != nil {
			return err
		}
		if prior = lk.Prior; prior != nil {
			return nil // the copy gets the first's answer
		}
		rr := r
		rr.Key = copyKey
		_, err = tx.Save(ctx, rr, nil)
		return err
	})
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err != nil || prior == nil {
		t.Fatalf("the copy that lost the race on requests_txn_key: %v after %d attempt(s), want it retried and given the first's answer", err, attempts)
	}
}

// waitForLockWait waits until a session of the test's database waits for
// a lock another holds.
func waitForLockWait(t *testing.T, pool *pgxpool.Pool) {
	for {
		var n int
		err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks WHERE NOT granted`).Scan(&n)
		if err != nil || n > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
