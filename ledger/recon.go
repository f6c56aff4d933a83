package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// A BankRow is one transaction of a bank's settlement file, as the bank
// settled it (net of reversals). Line is where the file has it.
type BankRow struct {
	Line                                       int64
	Acquirer, Terminal, STAN, RRN, Transmitted string
	MTI, Processing, Currency, ResponseCode    string
	Amount                                     int64
}

// Rows yields a file's rows one at a time, so that a file of any size is
// read in bounded memory: Next reports false at the end or on an error,
// which Err then returns.
type Rows[R any] interface {
	Next() bool
	Row() R
	Err() error
}

// A Run is the outcome of reconciling one daily file.
type Run struct {
	ID             int64     `json:"run"`
	Source         string    `json:"source"`
	Bank           string    `json:"bank,omitempty"`
	BusinessDate   string    `json:"business_date"`
	Format         string    `json:"format"`
	Rows           int64     `json:"rows"`
	Matched        int64     `json:"matched"`
	MissingHere    int64     `json:"missing_here"`
	MissingThere   int64     `json:"missing_there"`
	AmountMismatch int64     `json:"amount_mismatch"`
	StateMismatch  int64     `json:"state_mismatch,omitempty"`
	Settled        int64     `json:"settled,omitempty"`
	Open           int64     `json:"open"`
	RunBy          string    `json:"run_by"`
	At             time.Time `json:"at"`
}

// Breaks is how many breaks the run found, of every kind.
func (r Run) Breaks() int64 {
	return r.MissingHere + r.MissingThere + r.AmountMismatch + r.StateMismatch
}

// RunInfo says what a file is: its source's bank (empty for the fund
// company), its business date, its format's name, who ran it, and the
// file's SHA-256 (Digest, asked once its rows are read).
type RunInfo struct {
	Bank         string
	BusinessDate time.Time
	Format       string
	Digest       func() []byte
	RunBy        string
}

// ReconcileBank matches a bank's settlement file for a business date
// against what the ledger settled with that bank on it, in one
// transaction: the rows are copied into a table of the transaction's own
// as they are read, matched by identity (acquirer, terminal, STAN, RRN,
// transmission date and time) and amount, then by identity alone; each
// break becomes a case, or finds the case an earlier run opened; the
// earlier run's open cases this one does not find again are matched. A
// run that fails (a bad row, the connection) leaves nothing behind.
func (l *Ledger) ReconcileBank(ctx context.Context, info RunInfo, rows Rows[BankRow]) (Run, error) {
	var run Run
	err := l.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE recon_file (line bigint, acquirer text, terminal text, stan text, rrn text,
				transmitted text, mti text, processing text, amount bigint, currency text, response_code text) ON COMMIT DROP`); err != nil {
			return fmt.Errorf("staging the file: %w", err)
		}
		n, err := tx.CopyFrom(ctx, pgx.Identifier{"recon_file"},
			[]string{"line", "acquirer", "terminal", "stan", "rrn", "transmitted", "mti", "processing", "amount", "currency", "response_code"},
			pgx.CopyFromFunc(func() ([]any, error) {
				if !rows.Next() {
					return nil, rows.Err()
				}
				r := rows.Row()
				return []any{r.Line, r.Acquirer, r.Terminal, r.STAN, r.RRN, r.Transmitted, r.MTI, r.Processing, r.Amount, r.Currency, r.ResponseCode}, nil
			}))
		if err != nil {
			if rerr := rows.Err(); rerr != nil {
				return rerr
			}
			return fmt.Errorf("staging the file: %w", err)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `ANALYZE recon_file`); err != nil {
			return fmt.Errorf("staging the file: %w", err)
		}
		// What stands of each approved posting of the bank's on the date:
		// its amount, or less what its reversals left standing.
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE recon_ours ON COMMIT DROP AS
			SELECT r.id, r.card_id, r.acquirer, rtrim(r.terminal) AS terminal, r.stan, rtrim(r.rrn) AS rrn, r.transmitted,
				r.mti, r.txn_type, coalesce(nullif(r.currency, ''), d.currency) AS currency, coalesce(v.stands, r.amount) AS amount
			FROM requests r
			LEFT JOIN cards d ON d.id = r.card_id
			LEFT JOIN LATERAL (SELECT min(x.stands) AS stands FROM requests x WHERE x.reverses = r.id AND x.stands IS NOT NULL) v ON true
			WHERE r.bank = $1 AND r.business_date = $2 AND r.mti_class IN ('020', '022') AND r.state = 'answered'
				AND r.response_code = '00' AND coalesce(v.stands, r.amount) > 0`, info.Bank, info.BusinessDate); err != nil {
			return fmt.Errorf("reading the ledger's side: %w", err)
		}
		if _, err := tx.Exec(ctx, `ANALYZE recon_ours`); err != nil {
			return fmt.Errorf("reading the ledger's side: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE recon_pairs ON COMMIT DROP AS
			WITH f AS (SELECT line, acquirer, terminal, stan, rrn, transmitted, amount, currency,
					row_number() OVER (PARTITION BY acquirer, terminal, stan, rrn, transmitted, amount, currency ORDER BY line) AS k
				FROM recon_file),
			o AS (SELECT id, acquirer, terminal, stan, rrn, transmitted, amount, currency,
					row_number() OVER (PARTITION BY acquirer, terminal, stan, rrn, transmitted, amount, currency ORDER BY id) AS k
				FROM recon_ours)
			SELECT f.line, o.id, true AS exact FROM f JOIN o USING (acquirer, terminal, stan, rrn, transmitted, amount, currency, k)`); err != nil {
			return fmt.Errorf("matching: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO recon_pairs (line, id, exact)
			WITH f AS (SELECT line, acquirer, terminal, stan, rrn, transmitted,
					row_number() OVER (PARTITION BY acquirer, terminal, stan, rrn, transmitted ORDER BY amount, line) AS k
				FROM recon_file x WHERE NOT EXISTS (SELECT 1 FROM recon_pairs p WHERE p.line = x.line)),
			o AS (SELECT id, acquirer, terminal, stan, rrn, transmitted,
					row_number() OVER (PARTITION BY acquirer, terminal, stan, rrn, transmitted ORDER BY amount, id) AS k
				FROM recon_ours x WHERE NOT EXISTS (SELECT 1 FROM recon_pairs p WHERE p.id = x.id))
			SELECT f.line, o.id, false FROM f JOIN o USING (acquirer, terminal, stan, rrn, transmitted, k)`); err != nil {
			return fmt.Errorf("matching by identity: %w", err)
		}
		if err := tx.QueryRow(ctx, `INSERT INTO recon_runs (source, bank, business_date, format, file_sha256, rows, matched,
				missing_here, missing_there, amount_mismatch, run_by)
			VALUES ('bank', $1, $2, $3, $4, $5, (SELECT count(*) FROM recon_pairs WHERE exact), 0, 0,
				(SELECT count(*) FROM recon_pairs WHERE NOT exact), $6)
			RETURNING id`, info.Bank, info.BusinessDate, info.Format, info.Digest(), n, info.RunBy).Scan(&run.ID); err != nil {
			return fmt.Errorf("recording the run: %w", err)
		}
		// Every break, as a case: missing here (the bank's row no posting
		// matched), missing there (a posting no row matched), and amounts
		// that differ. One identity found twice on a side is told apart
		// by its count.
		if _, err := tx.Exec(ctx, `WITH breaks AS (
				SELECT 'missing_here' AS kind, f.acquirer, f.terminal, f.stan, f.rrn, f.transmitted, NULL::bigint AS request_id,
					NULL::bigint AS card_id, f.currency, NULL::bigint AS ours, f.amount AS theirs,
					jsonb_build_object('line', f.line, 'mti', f.mti, 'processing_code', f.processing, 'response_code', f.response_code) AS detail
				FROM recon_file f WHERE NOT EXISTS (SELECT 1 FROM recon_pairs p WHERE p.line = f.line)
				UNION ALL
				SELECT 'missing_there', o.acquirer, o.terminal, o.stan, o.rrn, o.transmitted, o.id, o.card_id, o.currency, o.amount, NULL,
					jsonb_build_object('mti', o.mti, 'txn_type', o.txn_type)
				FROM recon_ours o WHERE NOT EXISTS (SELECT 1 FROM recon_pairs p WHERE p.id = o.id)
				UNION ALL
				SELECT 'amount_mismatch', o.acquirer, o.terminal, o.stan, o.rrn, o.transmitted, o.id, o.card_id, f.currency, o.amount, f.amount,
					jsonb_build_object('line', f.line, 'mti', f.mti, 'processing_code', f.processing, 'response_code', f.response_code,
						'our_currency', o.currency, 'txn_type', o.txn_type)
				FROM recon_pairs p JOIN recon_file f ON f.line = p.line JOIN recon_ours o ON o.id = p.id WHERE NOT p.exact),
			named AS (
				SELECT b.*, concat_ws('/', b.acquirer, b.terminal, b.stan, b.rrn, b.transmitted) AS base,
					row_number() OVER (PARTITION BY b.kind, b.acquirer, b.terminal, b.stan, b.rrn, b.transmitted ORDER BY b.theirs, b.ours) AS k
				FROM breaks b)
			INSERT INTO recon_cases AS c (source, bank, business_date, kind, ident, request_id, card_id, currency, ours, theirs, detail,
				opened_run, last_run)
			SELECT 'bank', $1, $2, kind, base || CASE WHEN k > 1 THEN '#' || k ELSE '' END, request_id, card_id, currency, ours, theirs,
				detail, $3, $3
			FROM named
			ON CONFLICT (source, bank, business_date, kind, ident) DO UPDATE SET last_run = EXCLUDED.last_run,
				request_id = CASE WHEN c.state IN ('open', 'matched') THEN EXCLUDED.request_id ELSE c.request_id END,
				card_id = CASE WHEN c.state IN ('open', 'matched') THEN EXCLUDED.card_id ELSE c.card_id END,
				currency = CASE WHEN c.state IN ('open', 'matched') THEN EXCLUDED.currency ELSE c.currency END,
				ours = CASE WHEN c.state IN ('open', 'matched') THEN EXCLUDED.ours ELSE c.ours END,
				theirs = CASE WHEN c.state IN ('open', 'matched') THEN EXCLUDED.theirs ELSE c.theirs END,
				detail = CASE WHEN c.state IN ('open', 'matched') THEN EXCLUDED.detail ELSE c.detail END,
				state = CASE WHEN c.state = 'matched' THEN 'open' ELSE c.state END,
				resolved_at = CASE WHEN c.state = 'matched' THEN NULL ELSE c.resolved_at END`,
			info.Bank, info.BusinessDate, run.ID); err != nil {
			return fmt.Errorf("recording the breaks: %w", err)
		}
		return l.closeRun(ctx, tx, "bank", info.Bank, info.BusinessDate, &run)
	})
	return run, err
}

// closeRun matches the open cases of the day that run did not find again,
// counts its breaks and reads the run back.
func (l *Ledger) closeRun(ctx context.Context, tx pgx.Tx, source, bank string, day time.Time, run *Run) error {
	if _, err := tx.Exec(ctx, `UPDATE recon_cases SET state = 'matched', resolved_at = now()
		WHERE source = $1 AND bank = $2 AND business_date = $3 AND state = 'open' AND last_run <> $4`,
		source, bank, day, run.ID); err != nil {
		return fmt.Errorf("matching earlier cases: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE recon_runs r SET
			missing_here = (SELECT count(*) FROM recon_cases WHERE last_run = r.id AND kind = 'missing_here'),
			missing_there = (SELECT count(*) FROM recon_cases WHERE last_run = r.id AND kind = 'missing_there'),
			amount_mismatch = (SELECT count(*) FROM recon_cases WHERE last_run = r.id AND kind = 'amount_mismatch'),
			state_mismatch = (SELECT count(*) FROM recon_cases WHERE last_run = r.id AND kind = 'state_mismatch')
		WHERE id = $1`, run.ID); err != nil {
		return fmt.Errorf("counting the breaks: %w", err)
	}
	r, err := readRun(ctx, tx, run.ID)
	if err != nil {
		return err
	}
	*run = r
	return nil
}

const runColumns = `r.id, r.source, r.bank, to_char(r.business_date, 'YYYY-MM-DD'), r.format, r.rows, r.matched, r.missing_here,
	r.missing_there, r.amount_mismatch, r.state_mismatch, r.settled,
	(SELECT count(*) FROM recon_cases c WHERE c.last_run = r.id AND c.state = 'open'), r.run_by, r.created_at`

func scanRun(row pgx.Row) (Run, error) {
	var r Run
	err := row.Scan(&r.ID, &r.Source, &r.Bank, &r.BusinessDate, &r.Format, &r.Rows, &r.Matched, &r.MissingHere,
		&r.MissingThere, &r.AmountMismatch, &r.StateMismatch, &r.Settled, &r.Open, &r.RunBy, &r.At)
	return r, err
}

func readRun(ctx context.Context, q querier, id int64) (Run, error) {
	r, err := scanRun(q.QueryRow(ctx, `SELECT `+runColumns+` FROM recon_runs r WHERE r.id = $1`, id))
	if err != nil {
		return r, fmt.Errorf("reading run %d: %w", id, err)
	}
	return r, nil
}

// withTx runs fn in one transaction on the pool, committed if it returns
// nil.
func (l *Ledger) withTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, l.pool, fn)
}

// A Case is one break a reconciliation found.
type Case struct {
	ID           int64           `json:"id"`
	Source       string          `json:"source"`
	Bank         string          `json:"bank,omitempty"`
	BusinessDate string          `json:"business_date"`
	Kind         string          `json:"kind"`
	Ident        string          `json:"ident"`
	OrderID      string          `json:"order_id,omitempty"`
	CardRef      string          `json:"card,omitempty"`
	Currency     string          `json:"currency,omitempty"`
	Ours         *int64          `json:"ours"`
	Theirs       *int64          `json:"theirs"`
	Detail       json.RawMessage `json:"detail"`
	State        string          `json:"state"`
	OpenedRun    int64           `json:"opened_run"`
	LastRun      int64           `json:"last_run"`
	ResolvedBy   string          `json:"resolved_by,omitempty"`
	Reason       string          `json:"reason,omitempty"`
	OpenedAt     time.Time       `json:"opened_at"`
	ResolvedAt   *time.Time      `json:"resolved_at,omitempty"`

	cardID    int64
	requestID int64
}

const caseColumns = `c.id, c.source, c.bank, to_char(c.business_date, 'YYYY-MM-DD'), c.kind, c.ident, coalesce(c.order_id, ''),
	coalesce(d.ref, ''), coalesce(c.currency, ''), c.ours, c.theirs, c.detail, c.state, c.opened_run, c.last_run,
	coalesce(c.resolved_by, ''), coalesce(c.reason, ''), c.opened_at, c.resolved_at, coalesce(c.card_id, 0), coalesce(c.request_id, 0)`

func scanCase(row pgx.Row) (Case, error) {
	var c Case
	err := row.Scan(&c.ID, &c.Source, &c.Bank, &c.BusinessDate, &c.Kind, &c.Ident, &c.OrderID, &c.CardRef, &c.Currency,
		&c.Ours, &c.Theirs, &c.Detail, &c.State, &c.OpenedRun, &c.LastRun, &c.ResolvedBy, &c.Reason, &c.OpenedAt, &c.ResolvedAt,
		&c.cardID, &c.requestID)
	return c, err
}

// CaseFilter selects cases; empty fields select all.
type CaseFilter struct {
	Source, Bank, State, Kind string
	BusinessDate              *time.Time
	Run                       int64 // the cases a run found (its last)
	After                     int64 // ids above, for paging
	Limit                     int
}

// EachCase calls fn for every case f selects, in id order, as they are
// read: a run's cases are listed without holding them all.
func (l *Ledger) EachCase(ctx context.Context, f CaseFilter, fn func(Case) error) error {
	limit := f.Limit
	if limit <= 0 {
		limit = -1
	}
	rows, err := l.pool.Query(ctx, `SELECT `+caseColumns+` FROM recon_cases c LEFT JOIN cards d ON d.id = c.card_id
		WHERE ($1 = '' OR c.source = $1) AND ($2 = '' OR c.bank = $2) AND ($3 = '' OR c.state = $3) AND ($4 = '' OR c.kind = $4)
			AND ($5::date IS NULL OR c.business_date = $5) AND ($6 = 0 OR c.last_run = $6) AND c.id > $7
		ORDER BY c.id LIMIT CASE WHEN $8 < 0 THEN NULL ELSE $8 END`,
		f.Source, f.Bank, f.State, f.Kind, f.BusinessDate, f.Run, f.After, limit)
	if err != nil {
		return fmt.Errorf("listing cases: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		c, err := scanCase(rows)
		if err != nil {
			return fmt.Errorf("reading cases: %w", err)
		}
		if err := fn(c); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ErrUnknownCase is a case id the ledger does not hold.
var ErrUnknownCase = errors.New("ledger: no such case")

// CaseByID returns one case and its adjustments.
func (l *Ledger) CaseByID(ctx context.Context, id int64) (Case, []Adjustment, error) {
	c, err := scanCase(l.pool.QueryRow(ctx, `SELECT `+caseColumns+` FROM recon_cases c LEFT JOIN cards d ON d.id = c.card_id
		WHERE c.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, nil, ErrUnknownCase
	}
	if err != nil {
		return c, nil, fmt.Errorf("reading case %d: %w", id, err)
	}
	adj, err := l.Adjustments(ctx, AdjustmentFilter{Case: id})
	return c, adj, err
}

// OpenCase is the count of open cases of one source, bank and kind, and
// how old the oldest is.
type OpenCase struct {
	Source, Bank, Kind string
	Count              int64
	Oldest             time.Time
}

// OpenCases counts the open cases by source, bank and kind.
func (l *Ledger) OpenCases(ctx context.Context) ([]OpenCase, error) {
	rows, err := l.pool.Query(ctx, `SELECT source, bank, kind, count(*), min(opened_at) FROM recon_cases
		WHERE state = 'open' GROUP BY source, bank, kind ORDER BY source, bank, kind`)
	if err != nil {
		return nil, fmt.Errorf("counting open cases: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (OpenCase, error) {
		var o OpenCase
		err := row.Scan(&o.Source, &o.Bank, &o.Kind, &o.Count, &o.Oldest)
		return o, err
	})
}

// A Total is what a bank's requests of one business date and type come
// to: how many were approved, and what stands of them after reversals.
type Total struct {
	MTIClass string `json:"mti_class"`
	TxnType  string `json:"txn_type"`
	Currency string `json:"currency"`
	Count    int64  `json:"count"`
	Amount   int64  `json:"amount"`
	Reversed int64  `json:"reversed"` // how many were reversed in full, and are not counted
}

// Totals are a bank's approved authorisations and postings of a business
// date by type and currency, net of reversals.
func (l *Ledger) Totals(ctx context.Context, bank string, day time.Time) ([]Total, error) {
	rows, err := l.pool.Query(ctx, `SELECT r.mti_class, r.txn_type, coalesce(nullif(r.currency, ''), d.currency, ''),
			count(*) FILTER (WHERE coalesce(v.stands, r.amount) > 0 OR r.amount = 0),
			coalesce(sum(coalesce(v.stands, r.amount)), 0),
			count(*) FILTER (WHERE v.stands = 0 AND r.amount > 0)
		FROM requests r
		LEFT JOIN cards d ON d.id = r.card_id
		LEFT JOIN LATERAL (SELECT min(x.stands) AS stands FROM requests x WHERE x.reverses = r.id AND x.stands IS NOT NULL) v ON true
		WHERE r.bank = $1 AND r.business_date = $2 AND r.mti_class IN ('010', '012', '020', '022') AND r.state = 'answered'
			AND r.response_code = '00'
		GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`, bank, day)
	if err != nil {
		return nil, fmt.Errorf("totalling %s on %s: %w", bank, day.Format(time.DateOnly), err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Total, error) {
		var t Total
		err := row.Scan(&t.MTIClass, &t.TxnType, &t.Currency, &t.Count, &t.Amount, &t.Reversed)
		return t, err
	})
}

// A FundRow is one order of the fund company's daily confirmation file:
// a redemption or a subscription, confirmed or failed.
type FundRow struct {
	Line                            int64
	OrderID, Kind, Currency, Status string
	Amount                          int64
	TradeDate                       string
}

// Settle finishes an order the ledger holds pending as the fund company's
// file says it ended (kind "redemption" or "subscription"), the way the
// order's own follow-up would: under its card's lock, in a transaction of
// its own.
type Settle func(ctx context.Context, kind, id string, confirmed bool) error

// ReconcileFund matches the fund company's confirmation file for a day
// against the orders the ledger placed that day: redemptions by their
// quota day, subscriptions (sweeps) by their sweep day. An order the
// ledger holds pending that the file says ended, at the same amount, is
// first settled as the file says (settle); then every order is matched by
// its id: matched when amount, currency and outcome agree, amount_mismatch
// or state_mismatch when they do not, missing_here for an order the ledger
// never placed, missing_there for one it placed and holds confirmed or
// pending that the file does not list. Cases are kept as ReconcileBank
// keeps them. Settling happens only once the whole file has been read; a
// settled order stays settled if the run fails after it.
func (l *Ledger) ReconcileFund(ctx context.Context, info RunInfo, rows Rows[FundRow], settle Settle) (Run, error) {
	var run Run
	err := l.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE recon_fund_file (line bigint, order_id text, kind text, amount bigint,
				currency text, status text, trade_date text) ON COMMIT DROP`); err != nil {
			return fmt.Errorf("staging the file: %w", err)
		}
		n, err := tx.CopyFrom(ctx, pgx.Identifier{"recon_fund_file"},
			[]string{"line", "order_id", "kind", "amount", "currency", "status", "trade_date"},
			pgx.CopyFromFunc(func() ([]any, error) {
				if !rows.Next() {
					return nil, rows.Err()
				}
				r := rows.Row()
				return []any{r.Line, r.OrderID, r.Kind, r.Amount, r.Currency, r.Status, r.TradeDate}, nil
			}))
		if err != nil {
			if rerr := rows.Err(); rerr != nil {
				return rerr
			}
			return fmt.Errorf("staging the file: %w", err)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `ANALYZE recon_fund_file`); err != nil {
			return fmt.Errorf("staging the file: %w", err)
		}
		const ours = `SELECT id, 'redemption' AS kind, card_id, amount, currency::text AS currency, state
			FROM redemption_orders WHERE quota_day = $1
			UNION ALL
			SELECT id, 'subscription', card_id, amount, currency::text, state FROM sweeps WHERE day = $1`
		pending, err := tx.Query(ctx, `SELECT o.kind, o.id, f.status = 'confirmed' FROM (`+ours+`) o
			JOIN recon_fund_file f ON f.order_id = o.id AND f.kind = o.kind AND f.amount = o.amount AND f.currency = o.currency
			WHERE o.state = 'pending' ORDER BY o.id`, info.BusinessDate)
		if err != nil {
			return fmt.Errorf("finding pending orders: %w", err)
		}
		type toSettle struct {
			kind, id  string
			confirmed bool
		}
		todo, err := pgx.CollectRows(pending, func(row pgx.CollectableRow) (toSettle, error) {
			var s toSettle
			err := row.Scan(&s.kind, &s.id, &s.confirmed)
			return s, err
		})
		if err != nil {
			return fmt.Errorf("finding pending orders: %w", err)
		}
		settled := int64(0)
		for _, s := range todo {
			if err := settle(ctx, s.kind, s.id, s.confirmed); err != nil {
				return fmt.Errorf("settling %s %s as the fund company's file says: %w", s.kind, s.id, err)
			}
			settled++
		}
		// The orders as they stand now, settled ones included (each
		// statement of this transaction sees what others committed).
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE recon_fund_ours ON COMMIT DROP AS `+ours, info.BusinessDate); err != nil {
			return fmt.Errorf("reading the ledger's side: %w", err)
		}
		if err := tx.QueryRow(ctx, `INSERT INTO recon_runs (source, bank, business_date, format, file_sha256, rows, matched,
				missing_here, missing_there, amount_mismatch, settled, run_by)
			VALUES ('fund', '', $1, $2, $3, $4,
				(SELECT count(*) FROM recon_fund_file f JOIN recon_fund_ours o ON o.id = f.order_id AND o.kind = f.kind
					AND o.amount = f.amount AND o.currency = f.currency AND o.state = f.status),
				0, 0, 0, $5, $6)
			RETURNING id`, info.BusinessDate, info.Format, info.Digest(), n, settled, info.RunBy).Scan(&run.ID); err != nil {
			return fmt.Errorf("recording the run: %w", err)
		}
		if _, err := tx.Exec(ctx, `WITH f AS (
				SELECT *, row_number() OVER (PARTITION BY order_id ORDER BY line) AS k FROM recon_fund_file),
			breaks AS (
				SELECT CASE WHEN o.id IS NULL OR f.k > 1 OR o.kind <> f.kind THEN 'missing_here'
						WHEN o.amount <> f.amount OR o.currency <> f.currency THEN 'amount_mismatch'
						ELSE 'state_mismatch' END AS kind,
					f.order_id AS ident, f.k, o.card_id, f.currency, CASE WHEN f.k = 1 THEN o.amount END AS ours, f.amount AS theirs,
					jsonb_build_object('line', f.line, 'order_kind', f.kind, 'status', f.status, 'trade_date', f.trade_date,
						'our_state', CASE WHEN f.k = 1 THEN o.state END) AS detail
				FROM f LEFT JOIN recon_fund_ours o ON o.id = f.order_id
				WHERE o.id IS NULL OR f.k > 1 OR o.kind <> f.kind OR o.amount <> f.amount OR o.currency <> f.currency OR o.state <> f.status
				UNION ALL
				SELECT 'missing_there', o.id, 1, o.card_id, o.currency, o.amount, NULL,
					jsonb_build_object('order_kind', o.kind, 'our_state', o.state)
				FROM recon_fund_ours o
				WHERE o.state <> 'failed' AND NOT EXISTS (SELECT 1 FROM recon_fund_file x WHERE x.order_id = o.id))
			INSERT INTO recon_cases AS c (source, bank, business_date, kind, ident, order_id, card_id, currency, ours, theirs, detail,
				opened_run, last_run)
			SELECT 'fund', '', $1, kind, ident || CASE WHEN k > 1 THEN '#' || k ELSE '' END, ident, card_id, currency, ours, theirs,
				detail, $2, $2
			FROM breaks
			ON CONFLICT (source, bank, business_date, kind, ident) DO UPDATE SET last_run = EXCLUDED.last_run,
				card_id = CASE WHEN c.state IN ('open', 'matched') THEN EXCLUDED.card_id ELSE c.card_id END,
				currency = CASE WHEN c.state IN ('open', 'matched') THEN EXCLUDED.currency ELSE c.currency END,
				ours = CASE WHEN c.state IN ('open', 'matched') THEN EXCLUDED.ours ELSE c.ours END,
				theirs = CASE WHEN c.state IN ('open', 'matched') THEN EXCLUDED.theirs ELSE c.theirs END,
				detail = CASE WHEN c.state IN ('open', 'matched') THEN EXCLUDED.detail ELSE c.detail END,
				state = CASE WHEN c.state = 'matched' THEN 'open' ELSE c.state END,
				resolved_at = CASE WHEN c.state = 'matched' THEN NULL ELSE c.resolved_at END`,
			info.BusinessDate, run.ID); err != nil {
			return fmt.Errorf("recording the breaks: %w", err)
		}
		return l.closeRun(ctx, tx, "fund", "", info.BusinessDate, &run)
	})
	return run, err
}
