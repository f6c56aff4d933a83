package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Ledger is the double-entry ledger in one PostgreSQL database.
type Ledger struct {
	pool *pgxpool.Pool

	// mu guards system, the ids of system accounts by kind and currency;
	// they never change once created.
	mu     sync.Mutex
	system map[systemKey]int64

	// legacy is when legacyOpen last asked, and until when requests keyed
	// as before banks named their keys may see repeats (until it has
	// asked: open); its mu guards it.
	legacy struct {
		mu             sync.Mutex
		checked, until time.Time
	}

	// keys seal PANs and responses and key the PANs' hashes.
	keys *keyring
	// plainCards reports that cards stored before PANs were sealed may
	// remain: a look-up by PAN then also asks for the plain one.
	plainCards atomic.Bool
}

type systemKey struct{ kind, currency string }

// System account kinds.
const (
	SystemSettlement       = "settlement"
	SystemFundOmnibus      = "fund_omnibus"
	SystemFundSubscription = "fund_subscription"
	SystemFundRedeeming    = "fund_redeeming"
	SystemYieldRemainder   = "yield_remainder"
	SystemOpening          = "opening"
)

// commitTimeout bounds a commit once sent. A commit is not cancelled with
// its request's deadline: once sent, its outcome decides the response.
const commitTimeout = 10 * time.Second

// maxAttempts is how often Do runs a transaction that lost a race.
const maxAttempts = 3

// Open returns a ledger on pool, whose data keys are wrapped under kek.
// The schema must be migrated (Migrate); the first data keys are made if
// the database has none. A kek that does not open the database's keys is
// ErrKEK.
func Open(ctx context.Context, pool *pgxpool.Pool, kek KEK) (*Ledger, error) {
	keys, err := openKeyring(ctx, pool, kek)
	if err != nil {
		return nil, err
	}
	l := &Ledger{pool: pool, system: make(map[systemKey]int64), keys: keys}
	l.legacy.until = time.Now().Add(legacyWindow) // until the database says
	if err := l.checkClear(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// Pool returns the connection pool the ledger uses.
func (l *Ledger) Pool() *pgxpool.Pool { return l.pool }

// Tx is one ledger transaction in progress. It is not safe for concurrent
// use.
type Tx struct {
	l  *Ledger
	tx pgx.Tx
}

// Do runs fn in a transaction and commits it if fn returns nil. A
// transaction that lost a race with a concurrent one (the same request
// twice, a deadlock) is run again from the start, so fn must only read and
// write through tx. The commit is refused if ctx is done before it starts.
func (l *Ledger) Do(ctx context.Context, fn func(tx *Tx) error) error {
	var err error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		err = l.do(ctx, fn)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func (l *Ledger) do(ctx context.Context, fn func(tx *Tx) error) error {
	ptx, err := l.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	rollback := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
		defer cancel()
		_ = ptx.Rollback(rctx)
	}
	defer func() {
		if v := recover(); v != nil {
			rollback() // the connection goes back to the pool clean
			panic(v)
		}
	}()
	if err := fn(&Tx{l: l, tx: ptx}); err != nil {
		rollback()
		return err
	}
	if err := ctx.Err(); err != nil {
		rollback()
		return err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := ptx.Commit(cctx); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return fmt.Errorf("committing: %w", err) // the server refused: rolled back
		}
		return fmt.Errorf("%w: %w", ErrCommitUnknown, err)
	}
	return nil
}

// systemKinds are the system accounts every currency has.
var systemKinds = []string{SystemSettlement, SystemFundOmnibus, SystemFundSubscription, SystemFundRedeeming, SystemYieldRemainder, SystemOpening}

// EnsureSystemAccounts creates a currency's system accounts if missing (a
// card issued in it does so first). It runs on the pool, outside any
// transaction, so the accounts it makes are committed before any card of
// that currency can be used.
func (l *Ledger) EnsureSystemAccounts(ctx context.Context, currency string) error {
	for _, kind := range systemKinds {
		_, err := l.pool.Exec(ctx, `INSERT INTO accounts (kind, currency) VALUES ($1, $2)
			ON CONFLICT (kind, currency) WHERE card_id IS NULL DO NOTHING`, kind, currency)
		if err != nil {
			return fmt.Errorf("creating system account %s/%s: %w", kind, currency, err)
		}
	}
	return nil
}

// systemAccount returns the id of a system account, reading it through q
// (a transaction's own connection, never a second one from the pool: a
// transaction that waits for the pool can starve it).
func (l *Ledger) systemAccount(ctx context.Context, q querier, kind, currency string) (int64, error) {
	k := systemKey{kind, currency}
	l.mu.Lock()
	id, ok := l.system[k]
	l.mu.Unlock()
	if ok {
		return id, nil
	}
	err := q.QueryRow(ctx, `SELECT id FROM accounts WHERE kind = $1 AND currency = $2 AND card_id IS NULL`, kind, currency).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("finding system account %s/%s: %w", kind, currency, err)
	}
	l.mu.Lock()
	l.system[k] = id
	l.mu.Unlock()
	return id, nil
}

// querier is what pgx pools, connections and transactions share.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}
