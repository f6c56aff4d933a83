package bench

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/internal/cli"
	"github.com/goldcard/goldcard/switch/internal/kek"
)

// SeedBank is the bank code of the requests seed writes: a count of what
// the switch itself approved leaves them out by it.
const SeedBank = "bench-seed"

// seedChunk is how many rows one statement of seed writes.
const seedChunk = 50_000

// seedFlags are the flags of bench seed.
type seedFlags struct {
	db, kekFile     string
	cards, requests int
	cash, fund      int64
	sweep           bool
	asJSON          bool
}

func seedCommand() *cobra.Command {
	var f seedFlags
	c := &cobra.Command{
		Use:   "seed",
		Short: "Fill a ledger with cards and earlier requests, to measure the switch at scale",
		Long: `Write --cards cards (each with its cash, fund and overdraft accounts, opened
with --cash and --fund) and --requests earlier approved 0200 purchases of 1.00
spread over those cards, with their transfers, straight into the database in
set-based statements. Everything is double-entry, as the switch writes it:
the ledger audit holds afterwards.

The requests are a day old and belong to the bank code "bench-seed", so no
bank's traffic ever matches them and counts of a run's approvals can leave
them out. Use a database of its own: seed never removes what it wrote.`,
		Example: "  goldcard bench seed --db postgres://postgres@127.0.0.1:5432/goldcard_bench --cards 1000000 --requests 10000000",
		Args:    cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if f.db == "" {
				return cli.UsageError{Err: errors.New("--db is required")}
			}
			if f.cards < 0 || f.requests < 0 || f.cash < 0 || f.fund < 0 {
				return cli.UsageError{Err: errors.New("--cards, --requests, --cash and --fund cannot be negative")}
			}
			if f.requests > 0 && f.cards == 0 {
				return cli.UsageError{Err: errors.New("--requests needs --cards to belong to")}
			}
			if f.requests > 0 && f.cash < 100*int64((f.requests+f.cards-1)/f.cards) {
				return cli.UsageError{Err: fmt.Errorf("--cash %d does not cover %d purchases of 1.00 per card", f.cash, (f.requests+f.cards-1)/f.cards)}
			}
			return runSeed(c, f)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.db, "db", "", "PostgreSQL URL of the database to fill (required: never a default, so never a live ledger by mistake)")
	fl.StringVar(&f.kekFile, "kek-file", "", "the switches' key-encryption keys (default: $GOLDCARD_KEK, else ./var/"+kek.DevFile+")")
	fl.IntVar(&f.cards, "cards", 0, "cards to add")
	fl.IntVar(&f.requests, "requests", 0, "earlier approved requests to add, over the added cards")
	fl.Int64Var(&f.cash, "cash", 2_000_00, "opening cash of each card, in minor units")
	fl.Int64Var(&f.fund, "fund", 5_000_00, "opening fund shares of each card, in minor units")
	fl.BoolVar(&f.sweep, "sweep", true, "turn each card's daily sweep on")
	fl.BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	return c
}

func runSeed(c *cobra.Command, f seedFlags) error {
	ctx := c.Context()
	pool, _, err := openQuietly(ctx, f.db, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	keys, err := kek.ForTool(f.kekFile, "./var")
	if err != nil {
		return err
	}
	l, err := ledger.Open(ctx, pool, keys)
	if err != nil {
		return err
	}
	start := time.Now()
	var done atomic.Int64
	stop := cli.Progress(c.ErrOrStderr(), &done, start, "rows seeded")
	first, last, err := seedCards(ctx, pool, l, f, &done)
	if err == nil {
		err = seedRequests(ctx, pool, l, f, first, last, &done)
	}
	stop()
	if err != nil {
		return err
	}
	took := time.Since(start)
	if f.asJSON {
		b, _ := json.Marshal(map[string]any{"cards": f.cards, "requests": f.requests, "first_card": first, "last_card": last, "seconds": took.Seconds()})
		fmt.Fprintln(c.OutOrStdout(), string(b))
	} else {
		fmt.Fprintf(c.OutOrStdout(), "seeded %d cards (ids %d-%d) and %d requests in %.1fs\n", f.cards, first, last, f.requests, took.Seconds())
	}
	return nil
}

// seedCards adds the cards, chunk by chunk, and returns the range of
// their ids.
func seedCards(ctx context.Context, pool *pgxpool.Pool, l *ledger.Ledger, f seedFlags, done *atomic.Int64) (first, last int64, err error) {
	if err := l.EnsureSystemAccounts(ctx, "156"); err != nil {
		return 0, 0, err
	}
	// A PAN of digits the switch's own cards never start with (9999),
	// numbered past every card of that kind already seeded.
	var base int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM cards WHERE coalesce(pan_masked, pan_clear) LIKE '9999%' AND length(coalesce(pan_masked, pan_clear)) = 16`).Scan(&base); err != nil {
		return 0, 0, fmt.Errorf("counting seeded cards: %w", err)
	}
	var opening int64
	if err := pool.QueryRow(ctx, `SELECT id FROM accounts WHERE kind = 'opening' AND currency = '156' AND card_id IS NULL`).Scan(&opening); err != nil {
		return 0, 0, fmt.Errorf("finding the opening account: %w", err)
	}
	for n := 0; n < f.cards; n += seedChunk {
		size := min(seedChunk, f.cards-n)
		var (
			lo, hi         int64
			hashes, sealed = make([][]byte, size), make([][]byte, size)
			masked         = make([]string, size)
			key            int32
		)
		for i := range size {
			hashes[i], sealed[i], key, masked[i] = l.SealPAN(fmt.Sprintf("9999%012d", base+n+i+1))
		}
		err := pool.QueryRow(ctx, `WITH c AS (
				INSERT INTO cards (pan_hash, pan_sealed, pan_key, pan_masked, currency, sweep_enabled)
				SELECT h, s, $6, m, '156', $2 FROM unnest($1::bytea[], $7::bytea[], $8::text[]) WITH ORDINALITY x(h, s, m, i) ORDER BY i
				RETURNING id
			), a AS (
				INSERT INTO accounts (card_id, kind, currency)
				SELECT c.id, k, '156' FROM c, unnest(ARRAY['cash', 'fund', 'overdraft']) k
				RETURNING id, kind
			), t AS (
				INSERT INTO transfers (kind, debit_account, credit_account, currency, amount)
				SELECT 'opening', $3, a.id, '156', CASE a.kind WHEN 'cash' THEN $4::bigint ELSE $5::bigint END
				FROM a WHERE (a.kind = 'cash' AND $4 > 0) OR (a.kind = 'fund' AND $5 > 0)
			)
			SELECT min(id), max(id) FROM c`, hashes, f.sweep, opening, f.cash, f.fund, key, sealed, masked).Scan(&lo, &hi)
		if err != nil {
			return 0, 0, fmt.Errorf("seeding cards: %w", err)
		}
		if first == 0 {
			first = lo
		}
		last = hi
		done.Add(int64(size))
	}
	return first, last, nil
}

// seedRequests adds approved purchases of 1.00, a day old, spread over
// the cards first..last, each with its transfer.
func seedRequests(ctx context.Context, pool *pgxpool.Pool, l *ledger.Ledger, f seedFlags, first, last int64, done *atomic.Int64) error {
	var settlement int64
	if f.requests == 0 {
		return nil
	}
	if err := pool.QueryRow(ctx, `SELECT id FROM accounts WHERE kind = 'settlement' AND currency = '156' AND card_id IS NULL`).Scan(&settlement); err != nil {
		return fmt.Errorf("finding the settlement account: %w", err)
	}
	var base int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM requests WHERE bank = $1`, SeedBank).Scan(&base); err != nil {
		return fmt.Errorf("counting seeded requests: %w", err)
	}
	cards := last - first + 1
	// Every seeded request stores one fingerprint, and one response
	// sealed as the switch seals its own, bound to the request's key.
	fingerprint := l.Fingerprint([]byte{0})
	for n := 0; n < f.requests; n += seedChunk {
		size := min(seedChunk, f.requests-n)
		lo := base + int64(n)
		txnKeys, responses := make([][]byte, size), make([][]byte, size)
		var key int32
		for i := range size {
			sum := sha256.Sum256([]byte(SeedBank + strconv.FormatInt(lo+int64(i), 10)))
			txnKeys[i] = sum[:16]
			responses[i], key = l.SealResponse(txnKeys[i], []byte{0})
		}
		_, err := pool.Exec(ctx, `WITH r AS (
				INSERT INTO requests (bank, acquirer, stan, transmitted, terminal, mti_class, mti, rrn, fingerprint, card_id,
					txn_type, amount, response_code, auth_code, response, txn_key, currency, created_at, business_date, sealed_by)
				SELECT $1, '000000', lpad((g % 1000000)::text, 6, '0'), '0101000000', 'S' || lpad((g / 1000000)::text, 7, '0'),
					'020', '0200', lpad(g::text, 12, '0'), $6::bytea, $2::bigint + g % $3::bigint,
					'purchase', 100, '00', '000000', x.response, x.txn_key, '156', now() - interval '1 day',
					((now() - interval '1 day') AT TIME ZONE 'Asia/Shanghai')::date, $8::int
				FROM unnest($7::bytea[], $9::bytea[]) WITH ORDINALITY x(txn_key, response, i), LATERAL (SELECT $4::bigint + x.i - 1 AS g) n
				ORDER BY x.i
				RETURNING id, card_id
			)
			INSERT INTO transfers (request_id, kind, debit_account, credit_account, currency, amount)
			SELECT r.id, 'purchase', a.id, $5, '156', 100 FROM r JOIN accounts a ON a.card_id = r.card_id AND a.kind = 'cash'`,
			SeedBank, first, cards, lo, settlement, fingerprint, txnKeys, key, responses)
		if err != nil {
			return fmt.Errorf("seeding requests: %w", err)
		}
		done.Add(int64(size))
	}
	return nil
}
