package ledger_test

import (
	"context"
	"fmt"
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
	pool, conn := migratedTo(t, 7)
	if _, err := conn.Exec(ctx, `INSERT INTO requests (bank, acquirer, stan, transmitted, terminal, mti_class, mti, rrn,
			fingerprint, txn_type, amount, response_code, auth_code, response)
		VALUES ('default', '1234', '000042', '1201101010', 'ATM00001', '020', '0200', '000000000042',
			'f', 'purchase', 100, '00', '123456', '0210...')`); err != nil {
		t.Fatal(err)
	}
	return pool, conn
}

// migratedTo is a fresh database migrated to version, and a connection
// of its pool for the test to release.
func migratedTo(t *testing.T, version int32) (*pgxpool.Pool, *pgxpool.Conn) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, ledgertest.NewDatabase(t))
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
	if err := m.MigrateTo(ctx, version); err != nil {
		t.Fatal(err)
	}
	return pool, conn
}

// TestUpgradeALedgerWithRequests: the migration that keys requests by
// their bank's fields upgrades a ledger that holds requests (their history
// is guarded against updates), and a switch of the build before it cannot
// write there: its request, without a key, is refused whole.
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
			'f', 'purchase', 100, '00', '123456', '0210...')`); err == nil {
		t.Fatal("a request written as the build before wrote it was taken")
	}
	var legacy int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM requests WHERE legacy AND length(txn_key) = 16`).Scan(&legacy); err != nil || legacy != 1 {
		t.Fatalf("%d requests keyed as before (%v), want 1", legacy, err)
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
	l := ledgertest.Open(t, pool)
	// Its repeats, on the new build with the default txn_key: the same
	// DE32, DE11, DE41, DE37, with its DE13 and DE12, and the same DE7 or
	// a new one.
	for _, de7 := range []string{"1201101010", "1201101017"} {
		key := ledger.Key{Bank: "default", Class: "020", Acquirer: "1234", STAN: "000042", Transmitted: de7,
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
		if prior == nil || prior.ResponseCode != "00" {
			t.Fatalf("a repeat (DE7 %s) of a request answered before the upgrade found %+v: it would be posted again", de7, prior)
		}
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

// TestUpgradeKeepsWhatReversalsLeft: a reversal linked before the upgrade
// is taken to leave standing what its original's hold still holds, or the
// original's amount less what the reversal moved; a later reversal moves
// only what is left.
func TestUpgradeKeepsWhatReversalsLeft(t *testing.T) {
	ctx := context.Background()
	pool, conn := oldLedger(t)
	var card, cash, settlement, opening int64
	for _, q := range []struct {
		sql  string
		dest *int64
	}{
		{`INSERT INTO cards (pan, currency) VALUES ('6228480000000001', '156') RETURNING id`, &card},
		{`INSERT INTO accounts (kind, currency) VALUES ('settlement', '156') RETURNING id`, &settlement},
		{`INSERT INTO accounts (kind, currency) VALUES ('opening', '156') RETURNING id`, &opening},
	} {
		if err := conn.QueryRow(ctx, q.sql).Scan(q.dest); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.QueryRow(ctx, `WITH a AS (INSERT INTO accounts (card_id, kind, currency)
			VALUES ($1, 'cash', '156'), ($1, 'fund', '156'), ($1, 'overdraft', '156') RETURNING id, kind)
		SELECT id FROM a WHERE kind = 'cash'`, card).Scan(&cash); err != nil {
		t.Fatal(err)
	}
	// 1000 opened; a purchase of 100, of which a partial reversal gave 40
	// back; each as the build before wrote it.
	var orig, rev int64
	steps := []string{
		fmt.Sprintf(`INSERT INTO transfers (kind, debit_account, credit_account, currency, amount) VALUES ('opening', %d, %d, '156', 1000)`, opening, cash),
		fmt.Sprintf(`INSERT INTO requests (bank, acquirer, stan, transmitted, terminal, mti_class, mti, rrn, fingerprint, card_id,
			txn_type, amount, response_code, response) VALUES ('default', '1234', '000050', '1201101010', 'ATM00001', '020', '0200',
			'000000000050', 'f', %d, 'purchase', 100, '00', 'x') RETURNING id`, card),
	}
	for _, sql := range steps {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	if err := conn.QueryRow(ctx, `SELECT id FROM requests WHERE stan = '000050'`).Scan(&orig); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `INSERT INTO requests (bank, acquirer, stan, transmitted, terminal, mti_class, mti, rrn, fingerprint,
			card_id, txn_type, amount, response_code, response, reverses) VALUES ('default', '1234', '000050', '1201101011', 'ATM00001',
			'040', '0400', '000000000050', 'r', $1, 'purchase', 100, '00', 'x', $2) RETURNING id`, card, orig).Scan(&rev); err != nil {
		t.Fatal(err)
	}
	for _, tr := range []struct {
		req, debit, credit, amount int64
	}{{orig, cash, settlement, 100}, {rev, settlement, cash, 40}} {
		if _, err := conn.Exec(ctx, `INSERT INTO transfers (request_id, kind, debit_account, credit_account, currency, amount)
			VALUES ($1, 'purchase', $2, $3, '156', $4)`, tr.req, tr.debit, tr.credit, tr.amount); err != nil {
			t.Fatal(err)
		}
	}
	conn.Release()
	if err := ledger.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	l := ledgertest.Open(t, pool)
	var o *ledger.Original
	if err := l.Do(ctx, func(tx *ledger.Tx) error {
		var err error
		o, err = tx.FindOriginal(ctx, ledger.OriginalRef{Bank: "default", Terminal: "ATM00001",
			ByDE90: &ledger.OrigKey{Class: "020", Acquirer: "1234", STAN: "000050", Transmitted: "1201101010"}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if o == nil || o.Stands != 60 || o.ReversedBy != rev {
		t.Fatalf("the original after the upgrade: %+v, want 60 standing after reversal %d", o, rev)
	}
}
