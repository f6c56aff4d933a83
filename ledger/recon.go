package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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
	ID             int64  `json:"run"`
	Source         string `json:"source"`
	Bank           string `json:"bank,omitempty"`
	BusinessDate   string `json:"business_date"`
	Format         string `json:"format"`
	Rows           int64  `json:"rows"`
	Matched        int64  `json:"matched"`
	MissingHere    int64  `json:"missing_here"`
	MissingThere   int64  `json:"missing_there"`
	AmountMismatch int64  `json:"amount_mismatch"`
	StateMismatch  int64  `json:"state_mismatch,omitempty"`
	Settled        int64  `json:"settled,omitempty"`
	// Review counts the cases operators closed that this run no longer
	// finds: what was done about each needs looking at again.
	Review int64     `json:"review"`
	Open   int64     `json:"open"`
	RunBy  string    `json:"run_by"`
	At     time.Time `json:"at"`
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
// transmission date and time) and signed amount (a credit to the card, a
// refund or a reversal, is negative), then by identity alone; each break
// becomes a case, or finds the case an earlier run opened for the same
// break; the earlier runs' open cases this one does not find again are
// matched, and those an operator closed are marked for review. A run that
// fails (a bad row, the connection) leaves nothing behind.
//
// The ledger's side of a date is its approved postings (0200, 0220 and
// 0120) at what stands after the reversals of that date and before, and
// the reversals of that date of earlier postings, at what each gave back.
func (l *Ledger) ReconcileBank(ctx context.Context, info RunInfo, rows Rows[BankRow]) (Run, error) {
	var run Run
	err := l.withTx(ctx, func(tx pgx.Tx) error {
		if err := lockDay(ctx, tx, "bank", info.Bank, info.BusinessDate); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE recon_file (line bigint, acquirer text, terminal text, stan text, rrn text,
				transmitted text, mti text, processing text, amount bigint, currency text, response_code text) ON COMMIT DROP`); err != nil {
			return fmt.Errorf("staging the file: %w", err)
		}
		n, err := stage(ctx, tx, "recon_file", rows,
			[]string{"line", "acquirer", "terminal", "stan", "rrn", "transmitted", "mti", "processing", "amount", "currency", "response_code"},
			func(r BankRow) []any {
				return []any{r.Line, r.Acquirer, r.Terminal, r.STAN, r.RRN, r.Transmitted, r.MTI, r.Processing, r.Signed(),
					r.Currency, r.ResponseCode}
			})
		if err != nil {
			return err
		}
		// A row at nothing is a transaction of which nothing stands, a row
		// the bank declined one it did not settle, and a balance inquiry
		// moves no money: none is matched (a posting the ledger approved is
		// then missing there).
		if _, err := tx.Exec(ctx, `DELETE FROM recon_file WHERE amount = 0 OR response_code NOT IN ('', '00') OR processing LIKE '31%'`); err != nil {
			return fmt.Errorf("staging the file: %w", err)
		}
		if _, err := tx.Exec(ctx, `ANALYZE recon_file`); err != nil {
			return fmt.Errorf("staging the file: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE recon_ours ON COMMIT DROP AS
			SELECT r.id, r.card_id, r.acquirer, rtrim(r.terminal) AS terminal, r.stan, rtrim(r.rrn) AS rrn, r.transmitted,
				r.mti, r.txn_type, coalesce(nullif(r.currency, ''), d.currency) AS currency,
				CASE WHEN r.txn_type IN ('refund', 'deposit') THEN -1 ELSE 1 END * coalesce(v.stands, r.amount) AS amount
			FROM requests r
			LEFT JOIN cards d ON d.id = r.card_id
			LEFT JOIN LATERAL (SELECT min(x.stands) AS stands FROM requests x
				WHERE x.reverses = r.id AND x.stands IS NOT NULL AND x.business_date <= $2) v ON true
			WHERE r.bank = $1 AND r.business_date = $2 AND r.mti_class IN ('012', '020', '022') AND r.state = 'answered'
				AND r.response_code = '00' AND r.txn_type IN (`+movingTypes+`) AND coalesce(v.stands, r.amount) > 0
			UNION ALL
			SELECT x.id, o.card_id, x.acquirer, rtrim(x.terminal), x.stan, rtrim(x.rrn), x.transmitted, x.mti, o.txn_type,
				coalesce(nullif(o.currency, ''), d.currency),
				CASE WHEN o.txn_type IN ('refund', 'deposit') THEN 1 ELSE -1 END * (coalesce(p.stands, o.amount) - x.stands)
			FROM requests x
			JOIN requests o ON o.id = x.reverses
			LEFT JOIN cards d ON d.id = o.card_id
			LEFT JOIN LATERAL (SELECT min(y.stands) AS stands FROM requests y
				WHERE y.reverses = o.id AND y.stands IS NOT NULL AND y.id < x.id) p ON true
			WHERE x.bank = $1 AND x.business_date = $2 AND x.mti_class IN ('040', '042') AND x.stands IS NOT NULL
				AND o.business_date < $2 AND o.mti_class IN ('012', '020', '022') AND o.response_code = '00'
				AND o.txn_type IN (`+movingTypes+`) AND coalesce(p.stands, o.amount) > x.stands`, info.Bank, info.BusinessDate); err != nil {
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
			VALUES ('bank', $1, $2, $3, $4, $5, (SELECT count(*) FROM recon_pairs WHERE exact), 0, 0, 0, $6)
			RETURNING id`, info.Bank, info.BusinessDate, info.Format, info.Digest(), n, info.RunBy).Scan(&run.ID); err != nil {
			return fmt.Errorf("recording the run: %w", err)
		}
		// Every break, as a case: missing here (the bank's row no posting
		// matched), missing there (a posting no row matched), and amounts
		// that differ.
		if _, err := tx.Exec(ctx, `WITH breaks AS (
				SELECT 'missing_here' AS kind, f.acquirer, f.terminal, f.stan, f.rrn, f.transmitted, NULL::bigint AS request_id,
					NULL::bigint AS card_id, f.currency, NULL::bigint AS ours, f.amount AS theirs, f.line AS n,
					jsonb_build_object('line', f.line, 'mti', f.mti, 'processing_code', f.processing, 'response_code', f.response_code) AS detail
				FROM recon_file f WHERE NOT EXISTS (SELECT 1 FROM recon_pairs p WHERE p.line = f.line)
				UNION ALL
				SELECT 'missing_there', o.acquirer, o.terminal, o.stan, o.rrn, o.transmitted, o.id, o.card_id, o.currency, o.amount, NULL,
					o.id, jsonb_build_object('mti', o.mti, 'txn_type', o.txn_type)
				FROM recon_ours o WHERE NOT EXISTS (SELECT 1 FROM recon_pairs p WHERE p.id = o.id)
				UNION ALL
				SELECT 'amount_mismatch', o.acquirer, o.terminal, o.stan, o.rrn, o.transmitted, o.id, o.card_id, f.currency, o.amount, f.amount,
					f.line, jsonb_build_object('line', f.line, 'mti', f.mti, 'processing_code', f.processing, 'response_code', f.response_code,
						'our_currency', o.currency, 'txn_type', o.txn_type)
				FROM recon_pairs p JOIN recon_file f ON f.line = p.line JOIN recon_ours o ON o.id = p.id WHERE NOT p.exact),
			named AS (
				SELECT b.*, jsonb_build_array(b.acquirer, b.terminal, b.stan, b.rrn, b.transmitted)::text AS ident,
					concat(coalesce(b.ours::text, '-'), ' ', coalesce(b.theirs::text, '-'), ' ', b.currency) AS base
				FROM breaks b)
			INSERT INTO recon_cases AS c (source, bank, business_date, kind, ident, figures, request_id, card_id, currency, ours, theirs,
				detail, opened_run, last_run)
			SELECT 'bank', $1, $2, kind, ident,
				base || CASE WHEN k > 1 THEN ' #' || k ELSE '' END, request_id, card_id, currency, ours, theirs, detail, $3, $3
			FROM (SELECT *, row_number() OVER (PARTITION BY kind, ident, base ORDER BY n) AS k FROM named) x
			ON CONFLICT (source, bank, business_date, kind, ident, figures) DO UPDATE SET last_run = EXCLUDED.last_run,
				request_id = CASE WHEN c.state IN ('open', 'matched') THEN EXCLUDED.request_id ELSE c.request_id END,
				card_id = CASE WHEN c.state IN ('open', 'matched') THEN EXCLUDED.card_id ELSE c.card_id END,
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

// stage copies a file's rows into table as they are read, each as the
// values of columns, and says how many it copied. The file's own error
// (a row that cannot be read) is returned as it is.
func stage[R any](ctx context.Context, tx pgx.Tx, table string, rows Rows[R], columns []string, values func(R) []any) (int64, error) {
	n, err := tx.CopyFrom(ctx, pgx.Identifier{table}, columns, pgx.CopyFromFunc(func() ([]any, error) {
		if !rows.Next() {
			return nil, rows.Err()
		}
		return values(rows.Row()), nil
	}))
	if rerr := rows.Err(); rerr != nil {
		return 0, rerr
	}
	if err != nil {
		return 0, fmt.Errorf("staging the file: %w", err)
	}
	return n, nil
}

// movingTypes are the transaction types that move money: a balance
// inquiry carries an amount and moves none.
const movingTypes = `'` + KindPurchase + `', '` + KindCash + `', '` + KindRefund + `', '` + KindDeposit + `'`

// Signed is the row's amount as the ledger signs it: positive for money
// the card paid (a purchase, a withdrawal), negative for money it got (a
// refund or deposit, processing codes 20 and 21; a reversal, MTI 04xx,
// turns either round).
func (r BankRow) Signed() int64 {
	a := r.Amount
	if strings.HasPrefix(r.Processing, "20") || strings.HasPrefix(r.Processing, "21") {
		a = -a
	}
	if strings.HasPrefix(r.MTI, "04") {
		a = -a
	}
	return a
}

// ErrRunAgain is a run that found the ledger changed under it (an order
// it would settle, settled meanwhile): nothing was recorded, and the same
// file run again sees the change.
var ErrRunAgain = errors.New("ledger: the ledger changed during the run; run the file again")

// lockDay takes, for the transaction, the turn of one source's, bank's
// and date's reconciliation: two runs of a day, or a run and an operator
// working one of its cases, go one after the other. It is taken before
// any case or card is locked.
func lockDay(ctx context.Context, tx pgx.Tx, source, bank string, day time.Time) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('recon/' || $1 || '/' || $2 || '/' || $3::date::text, 0))`,
		source, bank, day)
	if err != nil {
		return fmt.Errorf("waiting for the day's reconciliation: %w", err)
	}
	return nil
}

// closeRun matches the open cases of the day that run did not find again,
// marks for review those an operator closed that it did not find again
// (and unmarks those it found), counts its breaks and reads the run back.
func (l *Ledger) closeRun(ctx context.Context, tx pgx.Tx, source, bank string, day time.Time, run *Run) error {
	for _, q := range []string{
		`UPDATE recon_cases SET state = 'matched', resolved_at = now()
			WHERE source = $1 AND bank = $2 AND business_date = $3 AND state = 'open' AND last_run <> $4`,
		`UPDATE recon_cases SET superseded_by = $4
			WHERE source = $1 AND bank = $2 AND business_date = $3 AND state IN ('adjusted', 'written_off') AND last_run <> $4`,
		`UPDATE recon_cases SET superseded_by = NULL
			WHERE source = $1 AND bank = $2 AND business_date = $3 AND last_run = $4 AND superseded_by IS NOT NULL`,
	} {
		if _, err := tx.Exec(ctx, q, source, bank, day, run.ID); err != nil {
			return fmt.Errorf("closing the run: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE recon_runs r SET
			missing_here = (SELECT count(*) FROM recon_cases WHERE last_run = r.id AND kind = 'missing_here'),
			missing_there = (SELECT count(*) FROM recon_cases WHERE last_run = r.id AND kind = 'missing_there'),
			amount_mismatch = (SELECT count(*) FROM recon_cases WHERE last_run = r.id AND kind = 'amount_mismatch'),
			state_mismatch = (SELECT count(*) FROM recon_cases WHERE last_run = r.id AND kind = 'state_mismatch'),
			review = (SELECT count(*) FROM recon_cases WHERE superseded_by = r.id)
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
	r.missing_there, r.amount_mismatch, r.state_mismatch, r.settled, r.review,
	(SELECT count(*) FROM recon_cases c WHERE c.last_run = r.id AND c.state = 'open'), r.run_by, r.created_at`

func scanRun(row pgx.Row) (Run, error) {
	var r Run
	err := row.Scan(&r.ID, &r.Source, &r.Bank, &r.BusinessDate, &r.Format, &r.Rows, &r.Matched, &r.MissingHere,
		&r.MissingThere, &r.AmountMismatch, &r.StateMismatch, &r.Settled, &r.Review, &r.Open, &r.RunBy, &r.At)
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
	Figures      string          `json:"figures"`
	OrderID      string          `json:"order_id,omitempty"`
	CardRef      string          `json:"card,omitempty"`
	Currency     string          `json:"currency,omitempty"`
	Ours         *int64          `json:"ours"`
	Theirs       *int64          `json:"theirs"`
	Detail       json.RawMessage `json:"detail"`
	State        string          `json:"state"`
	OpenedRun    int64           `json:"opened_run"`
	LastRun      int64           `json:"last_run"`
	SupersededBy *int64          `json:"superseded_by,omitempty"`
	ResolvedBy   string          `json:"resolved_by,omitempty"`
	Reason       string          `json:"reason,omitempty"`
	OpenedAt     time.Time       `json:"opened_at"`
	ResolvedAt   *time.Time      `json:"resolved_at,omitempty"`

	cardID int64
}

const caseColumns = `c.id, c.source, c.bank, to_char(c.business_date, 'YYYY-MM-DD'), c.kind, c.ident, c.figures, coalesce(c.order_id, ''),
	coalesce(d.ref, ''), coalesce(c.currency, ''), c.ours, c.theirs, c.detail, c.state, c.opened_run, c.last_run, c.superseded_by,
	coalesce(c.resolved_by, ''), coalesce(c.reason, ''), c.opened_at, c.resolved_at, coalesce(c.card_id, 0)`

func scanCase(row pgx.Row) (Case, error) {
	var c Case
	err := row.Scan(&c.ID, &c.Source, &c.Bank, &c.BusinessDate, &c.Kind, &c.Ident, &c.Figures, &c.OrderID, &c.CardRef, &c.Currency,
		&c.Ours, &c.Theirs, &c.Detail, &c.State, &c.OpenedRun, &c.LastRun, &c.SupersededBy, &c.ResolvedBy, &c.Reason, &c.OpenedAt, &c.ResolvedAt,
		&c.cardID)
	return c, err
}

// Stake is what a case puts at stake, in minor units: the difference
// between the two sides' amounts, or the one side's amount where the
// other has none. No adjustment of it moves more.
func (c Case) Stake() int64 {
	abs := func(p *int64) int64 {
		if p == nil {
			return 0
		}
		if *p < 0 {
			return -*p
		}
		return *p
	}
	switch {
	case c.Ours != nil && c.Theirs != nil && c.Kind == "amount_mismatch":
		d := *c.Ours - *c.Theirs
		return abs(&d)
	case c.Ours != nil && c.Theirs != nil:
		return max(abs(c.Ours), abs(c.Theirs))
	}
	return abs(c.Ours) + abs(c.Theirs)
}

// Case states and kinds.
var (
	CaseStates = []string{"open", "adjusted", "written_off", "matched"}
	CaseKinds  = []string{"missing_here", "missing_there", "amount_mismatch", "state_mismatch"}
)

// CaseFilter selects cases; empty fields select all.
type CaseFilter struct {
	Source, Bank, State, Kind string
	BusinessDate              *time.Time
	Run                       int64 // the cases a run found (its last), and those it marked for review
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
			AND ($5::date IS NULL OR c.business_date = $5) AND ($6 = 0 OR c.last_run = $6 OR c.superseded_by = $6) AND c.id > $7
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
// date by type and currency, net of the reversals of that date and
// before (as a reconciliation of the date nets them); a type that moves
// no money (a balance inquiry) is counted at nothing.
func (l *Ledger) Totals(ctx context.Context, bank string, day time.Time) ([]Total, error) {
	rows, err := l.pool.Query(ctx, `SELECT r.mti_class, r.txn_type, coalesce(nullif(r.currency, ''), d.currency, ''),
			count(*) FILTER (WHERE coalesce(v.stands, r.amount) > 0 OR r.amount = 0),
			coalesce(sum(coalesce(v.stands, r.amount)) FILTER (WHERE r.txn_type IN (`+movingTypes+`)), 0),
			count(*) FILTER (WHERE v.stands = 0 AND r.amount > 0)
		FROM requests r
		LEFT JOIN cards d ON d.id = r.card_id
		LEFT JOIN LATERAL (SELECT min(x.stands) AS stands FROM requests x
			WHERE x.reverses = r.id AND x.stands IS NOT NULL AND x.business_date <= $2) v ON true
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

// ReconcileFund matches the fund company's confirmation file for a day
// against the orders the ledger placed that day: redemptions by their
// quota day, subscriptions (sweeps) by their sweep day, in one
// transaction. An order the ledger holds pending that the file lists
// once, ended, at the same amount, is first settled as the file says, as
// its own follow-up would settle it (under its card's lock, in the run's
// transaction: a run that fails settles nothing). Then every order is
// matched by its id: matched when amount, currency and outcome agree,
// amount_mismatch or state_mismatch when they do not, missing_here for an
// order the ledger never placed (or one listed twice), missing_there for
// one it placed and holds confirmed or pending that the file does not
// list. Cases are kept as ReconcileBank keeps them.
func (l *Ledger) ReconcileFund(ctx context.Context, info RunInfo, rows Rows[FundRow]) (Run, error) {
	var run Run
	err := l.withTx(ctx, func(tx pgx.Tx) error {
		if err := lockDay(ctx, tx, "fund", "", info.BusinessDate); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE recon_fund_file (line bigint, order_id text, kind text, amount bigint,
				currency text, status text, trade_date text) ON COMMIT DROP`); err != nil {
			return fmt.Errorf("staging the file: %w", err)
		}
		n, err := stage(ctx, tx, "recon_fund_file", rows, []string{"line", "order_id", "kind", "amount", "currency", "status", "trade_date"},
			func(r FundRow) []any {
				return []any{r.Line, r.OrderID, r.Kind, r.Amount, r.Currency, r.Status, r.TradeDate}
			})
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE INDEX ON recon_fund_file (order_id)`); err != nil {
			return fmt.Errorf("staging the file: %w", err)
		}
		if _, err := tx.Exec(ctx, `ANALYZE recon_fund_file`); err != nil {
			return fmt.Errorf("staging the file: %w", err)
		}
		// A subscription is pending by design until its confirmation day
		// (sweep.confirm_time's task confirms it then): the file's word on
		// it is taken as agreeing, and left to that task (awaiting).
		const ours = `SELECT id, 'redemption' AS kind, card_id, amount, currency::text AS currency, state, false AS awaiting
			FROM redemption_orders WHERE quota_day = $1
			UNION ALL
			SELECT id, 'subscription', card_id, amount, currency::text, state,
				state = 'pending' AND confirm_on > (now() AT TIME ZONE 'Asia/Shanghai')::date
			FROM sweeps WHERE day = $1`
		pending, err := tx.Query(ctx, `SELECT o.kind, o.id, o.card_id, f.status = 'confirmed' FROM (`+ours+`) o
			JOIN recon_fund_file f ON f.order_id = o.id AND f.kind = o.kind AND f.amount = o.amount AND f.currency = o.currency
			WHERE o.state = 'pending' AND NOT o.awaiting AND NOT EXISTS (SELECT 1 FROM recon_fund_file x WHERE x.order_id = o.id AND x.line <> f.line)
			ORDER BY o.card_id, o.id`, info.BusinessDate)
		if err != nil {
			return fmt.Errorf("finding pending orders: %w", err)
		}
		type toSettle struct {
			kind, id  string
			card      int64
			confirmed bool
		}
		todo, err := pgx.CollectRows(pending, func(row pgx.CollectableRow) (toSettle, error) {
			var s toSettle
			err := row.Scan(&s.kind, &s.id, &s.card, &s.confirmed)
			return s, err
		})
		if err != nil {
			return fmt.Errorf("finding pending orders: %w", err)
		}
		// The orders as they will stand: those the run settles at the
		// file's word. They are settled last, so that the cards' locks
		// are held for the run's last moment only.
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE recon_fund_ours ON COMMIT DROP AS `+ours, info.BusinessDate); err != nil {
			return fmt.Errorf("reading the ledger's side: %w", err)
		}
		ids, states := make([]string, len(todo)), make([]string, len(todo))
		for i, s := range todo {
			ids[i], states[i] = s.id, OrderFailed
			if s.confirmed {
				states[i] = OrderConfirmed
			}
		}
		if _, err := tx.Exec(ctx, `CREATE INDEX ON recon_fund_ours (id)`); err != nil {
			return fmt.Errorf("reading the ledger's side: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE recon_fund_ours o SET state = u.state FROM unnest($1::text[], $2::text[]) AS u(id, state)
			WHERE o.id = u.id`, ids, states); err != nil {
			return fmt.Errorf("reading the ledger's side: %w", err)
		}
		if _, err := tx.Exec(ctx, `ANALYZE recon_fund_ours`); err != nil {
			return fmt.Errorf("reading the ledger's side: %w", err)
		}
		settled := int64(len(todo))
		if err := tx.QueryRow(ctx, `INSERT INTO recon_runs (source, bank, business_date, format, file_sha256, rows, matched,
				missing_here, missing_there, amount_mismatch, settled, run_by)
			VALUES ('fund', '', $1, $2, $3, $4,
				(SELECT count(*) FROM recon_fund_file f JOIN recon_fund_ours o ON o.id = f.order_id AND o.kind = f.kind
					AND o.amount = f.amount AND o.currency = f.currency AND (o.state = f.status OR o.awaiting AND f.status = 'confirmed')
				 WHERE NOT EXISTS (SELECT 1 FROM recon_fund_file x WHERE x.order_id = f.order_id AND x.line < f.line)),
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
					CASE WHEN f.k = 1 THEN o.state END AS our_state, f.status AS their_state,
					jsonb_build_object('line', f.line, 'order_kind', f.kind, 'status', f.status, 'trade_date', f.trade_date,
						'our_state', CASE WHEN f.k = 1 THEN o.state END) AS detail
				FROM f LEFT JOIN recon_fund_ours o ON o.id = f.order_id
				WHERE o.id IS NULL OR f.k > 1 OR o.kind <> f.kind OR o.amount <> f.amount OR o.currency <> f.currency
					OR (o.state <> f.status AND NOT (o.awaiting AND f.status = 'confirmed'))
				UNION ALL
				SELECT 'missing_there', o.id, 1, o.card_id, o.currency, o.amount, NULL, o.state, NULL,
					jsonb_build_object('order_kind', o.kind, 'our_state', o.state)
				FROM recon_fund_ours o
				WHERE o.state <> 'failed' AND NOT EXISTS (SELECT 1 FROM recon_fund_file x WHERE x.order_id = o.id))
			INSERT INTO recon_cases AS c (source, bank, business_date, kind, ident, figures, order_id, card_id, currency, ours, theirs,
				detail, opened_run, last_run)
			SELECT 'fund', '', $1, kind, ident,
				concat(coalesce(ours::text, '-'), ' ', coalesce(our_state, '-'), ' ', coalesce(theirs::text, '-'), ' ', coalesce(their_state, '-'),
					' ', currency, CASE WHEN k > 1 THEN ' #' || k ELSE '' END),
				ident, card_id, currency, ours, theirs, detail, $2, $2
			FROM breaks
			ON CONFLICT (source, bank, business_date, kind, ident, figures) DO UPDATE SET last_run = EXCLUDED.last_run,
				card_id = CASE WHEN c.state IN ('open', 'matched') THEN EXCLUDED.card_id ELSE c.card_id END,
				detail = CASE WHEN c.state IN ('open', 'matched') THEN EXCLUDED.detail ELSE c.detail END,
				state = CASE WHEN c.state = 'matched' THEN 'open' ELSE c.state END,
				resolved_at = CASE WHEN c.state = 'matched' THEN NULL ELSE c.resolved_at END`,
			info.BusinessDate, run.ID); err != nil {
			return fmt.Errorf("recording the breaks: %w", err)
		}
		// The cards are locked in one statement, in account order, as
		// every writer of many cards locks them.
		lt := &Tx{l: l, tx: tx}
		cardIDs := make([]int64, 0, len(todo))
		for _, s := range todo {
			if len(cardIDs) == 0 || cardIDs[len(cardIDs)-1] != s.card {
				cardIDs = append(cardIDs, s.card)
			}
		}
		locked, err := lt.LockCardsByID(ctx, cardIDs)
		if err != nil {
			return err
		}
		cards := make(map[int64]*Card, len(locked))
		for _, c := range locked {
			cards[c.ID] = c
		}
		for _, s := range todo {
			c := cards[s.card]
			if c == nil {
				return fmt.Errorf("settling %s %s: %w", s.kind, s.id, ErrUnknownCard)
			}
			var done bool
			switch {
			case s.kind == "subscription":
				done, err = lt.ResolveSweep(ctx, c, s.id, s.confirmed)
			case s.confirmed:
				done, err = lt.ConfirmRedemption(ctx, c, s.id)
			default:
				done, err = lt.FailRedemption(ctx, c, s.id, "failed in the fund company's daily file")
			}
			if err != nil {
				return fmt.Errorf("settling %s %s as the fund company's file says: %w", s.kind, s.id, err)
			}
			if done {
				continue
			}
			// Its follow-up settled it meanwhile: as the file says, and the
			// run stands (it did not settle that one); otherwise the run's
			// view of it is wrong.
			want := OrderFailed
			if s.confirmed {
				want = OrderConfirmed
			}
			var now string
			if err := tx.QueryRow(ctx, `SELECT state FROM redemption_orders WHERE id = $1 UNION ALL SELECT state FROM sweeps WHERE id = $1`,
				s.id).Scan(&now); err != nil {
				return fmt.Errorf("settling %s %s: %w", s.kind, s.id, err)
			}
			if now != want {
				return fmt.Errorf("%w: %s %s was settled %s by its follow-up meanwhile", ErrRunAgain, s.kind, s.id, now)
			}
			settled--
		}
		if _, err := tx.Exec(ctx, `UPDATE recon_runs SET settled = $2 WHERE id = $1`, run.ID, settled); err != nil {
			return fmt.Errorf("recording the run: %w", err)
		}
		return l.closeRun(ctx, tx, "fund", "", info.BusinessDate, &run)
	})
	return run, err
}
