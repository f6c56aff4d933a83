package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Errors of cases and adjustments.
var (
	ErrCaseClosed         = errors.New("ledger: the case is not open")
	ErrUnknownAdjustment  = errors.New("ledger: no such adjustment waiting for approval")
	ErrSameOperator       = errors.New("ledger: an adjustment is approved by an operator other than the one who made it")
	ErrAdjustmentPending  = errors.New("ledger: the case already has an adjustment waiting for approval")
	ErrBadAdjustment      = errors.New("ledger: bad adjustment")
	ErrAdjustmentOverdraw = errors.New("ledger: the adjustment would take a card account below what the schema allows")
)

// Adjustment sides: a card's own accounts, and the system accounts an
// adjustment may move money against.
var adjustmentSides = []string{"cash", "fund", SystemSettlement, SystemFundOmnibus}

// An Adjustment is one operator's double-entry correction of a case.
type Adjustment struct {
	ID            int64      `json:"id"`
	CaseID        int64      `json:"case"`
	CardRef       string     `json:"card"`
	Debit         string     `json:"debit"`
	Credit        string     `json:"credit"`
	Currency      string     `json:"currency"`
	Amount        int64      `json:"amount"`
	Reason        string     `json:"reason"`
	RequestedBy   string     `json:"requested_by"`
	NeedsApproval bool       `json:"needs_approval"`
	ApprovedBy    string     `json:"approved_by,omitempty"`
	RejectedBy    string     `json:"rejected_by,omitempty"`
	Rejection     string     `json:"rejection,omitempty"`
	State         string     `json:"state"`
	CreatedAt     time.Time  `json:"created_at"`
	DecidedAt     *time.Time `json:"decided_at,omitempty"`
}

// AdjustRequest asks for an adjustment of a case: Amount (minor units)
// from the Debit side to the Credit side, one of them the card's cash or
// fund account, the other the card's other account or a system account
// (settlement, fund_omnibus). Card names the card by its ref when the
// case does not know it (a transaction the ledger never saw). It waits
// for a second operator when the operator names the card, or when it
// takes what the operator has adjusted alone in the last day above
// FourEyesAbove.
type AdjustRequest struct {
	Case          int64
	Card          string
	Debit, Credit string
	Amount        int64
	Reason        string
	Operator      string
	FourEyesAbove int64
}

func (r AdjustRequest) check() error {
	switch {
	case r.Amount <= 0:
		return fmt.Errorf("%w: the amount must be positive, in minor units", ErrBadAdjustment)
	case !slices.Contains(adjustmentSides, r.Debit) || !slices.Contains(adjustmentSides, r.Credit):
		return fmt.Errorf("%w: debit and credit must each be one of %s", ErrBadAdjustment, strings.Join(adjustmentSides, ", "))
	case r.Debit == r.Credit:
		return fmt.Errorf("%w: debit and credit must differ", ErrBadAdjustment)
	case !cardSide(r.Debit) && !cardSide(r.Credit):
		return fmt.Errorf("%w: one side must be the card's cash or fund account", ErrBadAdjustment)
	case len(strings.TrimSpace(r.Reason)) < 3 || len(r.Reason) > 500:
		return fmt.Errorf("%w: a reason of 3 to 500 characters is required", ErrBadAdjustment)
	case r.Operator == "":
		return fmt.Errorf("%w: the operator is not known", ErrBadAdjustment)
	}
	return nil
}

func cardSide(s string) bool { return s == "cash" || s == "fund" }

const adjustmentColumns = `a.id, a.case_id, d.ref, a.debit_account, a.credit_account, a.currency, a.amount, a.reason, a.requested_by,
	a.needs_approval, coalesce(a.approved_by, ''), coalesce(a.rejected_by, ''), coalesce(a.rejection, ''), a.state, a.created_at,
	a.decided_at, a.card_id`

func (l *Ledger) scanAdjustment(ctx context.Context, q querier, row pgx.Row) (Adjustment, error) {
	var (
		a             Adjustment
		debit, credit int64
		card          int64
	)
	err := row.Scan(&a.ID, &a.CaseID, &a.CardRef, &debit, &credit, &a.Currency, &a.Amount, &a.Reason, &a.RequestedBy,
		&a.NeedsApproval, &a.ApprovedBy, &a.RejectedBy, &a.Rejection, &a.State, &a.CreatedAt, &a.DecidedAt, &card)
	if err != nil {
		return a, err
	}
	if a.Debit, err = l.sideName(ctx, q, debit); err == nil {
		a.Credit, err = l.sideName(ctx, q, credit)
	}
	return a, err
}

// sideName is an adjustment's side as the API names it: the account's
// kind (a card's or a system one).
func (l *Ledger) sideName(ctx context.Context, q querier, account int64) (string, error) {
	var kind string
	err := q.QueryRow(ctx, `SELECT kind FROM accounts WHERE id = $1`, account).Scan(&kind)
	return kind, err
}

// AdjustmentStates are the states an adjustment is in.
var AdjustmentStates = []string{"pending", "posted", "rejected"}

// AdjustmentFilter selects adjustments: of one case, or in one state,
// with ids above After.
type AdjustmentFilter struct {
	Case  int64
	State string
	After int64
	Limit int
}

// Adjustments lists adjustments, oldest first.
func (l *Ledger) Adjustments(ctx context.Context, f AdjustmentFilter) ([]Adjustment, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	rows, err := l.pool.Query(ctx, `SELECT `+adjustmentColumns+` FROM adjustments a JOIN cards d ON d.id = a.card_id
		WHERE ($1 = 0 OR a.case_id = $1) AND ($2 = '' OR a.state = $2) AND a.id > $4 ORDER BY a.id LIMIT $3`, f.Case, f.State, limit, f.After)
	if err != nil {
		return nil, fmt.Errorf("listing adjustments: %w", err)
	}
	defer rows.Close()
	var out []Adjustment
	for rows.Next() {
		a, err := l.scanAdjustment(ctx, l.pool, rows)
		if err != nil {
			return nil, fmt.Errorf("reading adjustments: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Adjust records an operator's adjustment of an open case and, when its
// amount is within FourEyesAbove, posts it at once: one transfer, the
// case adjusted, in one transaction. Above that it waits for Approve.
func (l *Ledger) Adjust(ctx context.Context, r AdjustRequest) (Adjustment, error) {
	if err := r.check(); err != nil {
		return Adjustment{}, err
	}
	var out Adjustment
	err := l.withTx(ctx, func(tx pgx.Tx) error {
		c, err := lockCase(ctx, tx, r.Case)
		if err != nil {
			return err
		}
		card := c.cardID
		if r.Card != "" {
			var given int64
			if err := tx.QueryRow(ctx, `SELECT id FROM cards WHERE ref = $1`, r.Card).Scan(&given); errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("%w: no card %s", ErrBadAdjustment, r.Card)
			} else if err != nil {
				return err
			}
			if card != 0 && given != card {
				return fmt.Errorf("%w: the case is of another card", ErrBadAdjustment)
			}
			card = given
		}
		if card == 0 {
			return fmt.Errorf("%w: the case names no card; say which (card)", ErrBadAdjustment)
		}
		debit, credit, currency, err := l.adjustmentAccounts(ctx, tx, card, r.Debit, r.Credit)
		if err != nil {
			return err
		}
		if c.Currency != "" && c.Currency != currency {
			return fmt.Errorf("%w: the case is in %s, the card in %s", ErrBadAdjustment, c.Currency, currency)
		}
		// What was adjusted already on the same transaction (a case of it
		// with other figures, from an earlier file) counts against the
		// stake.
		var moved, alone int64
		if err := tx.QueryRow(ctx, `SELECT coalesce(sum(a.amount), 0) FROM adjustments a JOIN recon_cases k ON k.id = a.case_id
			WHERE a.state IN ('pending', 'posted') AND k.source = $1 AND k.bank = $2 AND k.business_date = $3::date AND k.ident = $4`,
			c.Source, c.Bank, c.BusinessDate, c.Ident).Scan(&moved); err != nil {
			return err
		}
		if stake := c.Stake(); r.Amount > stake-moved {
			return fmt.Errorf("%w: %d is more than the case puts at stake (%d, of which %d adjusted already)", ErrBadAdjustment, r.Amount, stake, moved)
		}
		// One operator alone moves at most the four-eyes amount a day, in
		// all: many small adjustments need a second operator as one large
		// one does. The operator's turn (taken after the day's and the
		// case's, which nothing takes after it) keeps two of theirs at once
		// from both finding room.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('adjust-op/' || $1, 0))`, r.Operator); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(sum(amount), 0) FROM adjustments
			WHERE requested_by = $1 AND NOT needs_approval AND state = 'posted' AND created_at > now() - interval '1 day'`,
			r.Operator).Scan(&alone); err != nil {
			return err
		}
		// A card the operator names (the case knew none) is their
		// judgement: a second operator looks at it, whatever the amount.
		needsApproval := alone+r.Amount > r.FourEyesAbove || c.cardID == 0
		var pending bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM adjustments WHERE case_id = $1 AND state = 'pending')`, r.Case).Scan(&pending); err != nil {
			return err
		}
		if pending {
			return ErrAdjustmentPending
		}
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO adjustments (case_id, card_id, debit_account, credit_account, currency, amount, reason,
				requested_by, needs_approval) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
			r.Case, card, debit, credit, currency, r.Amount, strings.TrimSpace(r.Reason), r.Operator, needsApproval).Scan(&id); err != nil {
			return fmt.Errorf("recording the adjustment: %w", err)
		}
		if !needsApproval {
			if err := post(ctx, tx, id, ""); err != nil {
				return err
			}
		}
		out, err = l.adjustment(ctx, tx, id)
		return err
	})
	return out, err
}

// Approve posts an adjustment waiting for a second operator's approval:
// one who did not make it.
func (l *Ledger) Approve(ctx context.Context, id int64, operator string) (Adjustment, error) {
	var out Adjustment
	err := l.withTx(ctx, func(tx pgx.Tx) error {
		var caseID int64
		err := tx.QueryRow(ctx, `SELECT case_id FROM adjustments WHERE id = $1 AND state = 'pending'`, id).Scan(&caseID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrUnknownAdjustment
		} else if err != nil {
			return err
		}
		if _, err := lockCase(ctx, tx, caseID); err != nil {
			return err
		}
		var by string
		err = tx.QueryRow(ctx, `SELECT requested_by FROM adjustments WHERE id = $1 AND state = 'pending' FOR UPDATE`, id).Scan(&by)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrUnknownAdjustment
		}
		if err != nil {
			return err
		}
		if operator == "" || operator == by {
			return ErrSameOperator
		}
		if err := post(ctx, tx, id, operator); err != nil {
			return err
		}
		out, err = l.adjustment(ctx, tx, id)
		return err
	})
	return out, err
}

// Reject refuses an adjustment waiting for approval; its case stays open.
func (l *Ledger) Reject(ctx context.Context, id int64, operator, reason string) (Adjustment, error) {
	reason = strings.TrimSpace(reason)
	if len(reason) < 3 || len(reason) > 500 || operator == "" {
		return Adjustment{}, fmt.Errorf("%w: a reason of 3 to 500 characters is required", ErrBadAdjustment)
	}
	var out Adjustment
	err := l.withTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE adjustments SET state = 'rejected', rejected_by = $2, rejection = $3, decided_at = now()
			WHERE id = $1 AND state = 'pending'`, id, operator, reason)
		if err != nil {
			return fmt.Errorf("rejecting adjustment %d: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			return ErrUnknownAdjustment
		}
		out, err = l.adjustment(ctx, tx, id)
		return err
	})
	return out, err
}

// ErrWriteOffWaits is a write-off asked for again by the operator who
// asked for it: it waits for another.
var ErrWriteOffWaits = errors.New("ledger: the write-off waits for a second operator")

// WriteOff closes an open case without moving money, with the operator's
// reason. A case that puts more than fourEyesAbove at stake is written off
// by two: the first operator asks (done is false), a second one makes it.
func (l *Ledger) WriteOff(ctx context.Context, caseID int64, operator, reason string, fourEyesAbove int64) (c Case, done bool, err error) {
	reason = strings.TrimSpace(reason)
	if len(reason) < 3 || len(reason) > 500 || operator == "" {
		return Case{}, false, fmt.Errorf("%w: a reason of 3 to 500 characters is required", ErrBadAdjustment)
	}
	err = l.withTx(ctx, func(tx pgx.Tx) error {
		c, err := lockCase(ctx, tx, caseID)
		if err != nil {
			return err
		}
		var pending bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM adjustments WHERE case_id = $1 AND state = 'pending')`, caseID).Scan(&pending); err != nil {
			return err
		}
		if pending {
			return ErrAdjustmentPending
		}
		var askedBy string
		if err := tx.QueryRow(ctx, `SELECT coalesce(write_off_by, '') FROM recon_cases WHERE id = $1`, caseID).Scan(&askedBy); err != nil {
			return err
		}
		switch {
		case c.Stake() > fourEyesAbove && askedBy == "":
			_, err = tx.Exec(ctx, `UPDATE recon_cases SET write_off_by = $2, write_off_reason = $3 WHERE id = $1`, caseID, operator, reason)
			return err
		case c.Stake() > fourEyesAbove && askedBy == operator:
			return ErrWriteOffWaits
		}
		done = true
		_, err = tx.Exec(ctx, `UPDATE recon_cases SET state = 'written_off', resolved_by = $2,
				reason = CASE WHEN write_off_reason IS NULL THEN $3 ELSE write_off_reason || ' (approved: ' || $3 || ')' END,
				resolved_at = now()
			WHERE id = $1`, caseID, operator, reason)
		return err
	})
	if err != nil {
		return Case{}, false, err
	}
	c, _, err = l.CaseByID(ctx, caseID)
	return c, done, err
}

// lockCase locks an open case for the transaction, after its day's
// reconciliation turn (lockDay): an operator's act on a case waits for a
// run of its day, and a run for it, in one order.
func lockCase(ctx context.Context, tx pgx.Tx, id int64) (Case, error) {
	var (
		source, bank string
		day          time.Time
	)
	err := tx.QueryRow(ctx, `SELECT source, bank, business_date FROM recon_cases WHERE id = $1`, id).Scan(&source, &bank, &day)
	if errors.Is(err, pgx.ErrNoRows) {
		return Case{}, ErrUnknownCase
	}
	if err != nil {
		return Case{}, fmt.Errorf("reading case %d: %w", id, err)
	}
	if err := lockDay(ctx, tx, source, bank, day); err != nil {
		return Case{}, err
	}
	c, err := scanCase(tx.QueryRow(ctx, `SELECT `+caseColumns+` FROM recon_cases c LEFT JOIN cards d ON d.id = c.card_id
		WHERE c.id = $1 FOR UPDATE OF c`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, ErrUnknownCase
	}
	if err != nil {
		return c, fmt.Errorf("reading case %d: %w", id, err)
	}
	if c.State != "open" {
		return c, fmt.Errorf("%w: case %d is %s", ErrCaseClosed, id, c.State)
	}
	return c, nil
}

// adjustmentAccounts are the accounts of an adjustment's sides for a
// card, and the card's currency. The card's accounts are locked, in id
// order as every writer locks them.
func (l *Ledger) adjustmentAccounts(ctx context.Context, tx pgx.Tx, card int64, debit, credit string) (int64, int64, string, error) {
	rows, err := tx.Query(ctx, `SELECT id, kind, currency FROM accounts WHERE card_id = $1 ORDER BY id FOR UPDATE`, card)
	if err != nil {
		return 0, 0, "", err
	}
	ids := map[string]int64{}
	var currency string
	for rows.Next() {
		var id int64
		var kind string
		if err := rows.Scan(&id, &kind, &currency); err != nil {
			return 0, 0, "", err
		}
		ids[kind] = id
	}
	if err := rows.Err(); err != nil {
		return 0, 0, "", err
	}
	side := func(s string) (int64, error) {
		if cardSide(s) {
			return ids[s], nil
		}
		return l.systemAccount(ctx, tx, s, currency)
	}
	d, err := side(debit)
	if err != nil {
		return 0, 0, "", err
	}
	c, err := side(credit)
	return d, c, currency, err
}

// post makes a recorded adjustment's transfer and closes its case.
func post(ctx context.Context, tx pgx.Tx, id int64, approver string) error {
	var transfer int64
	err := tx.QueryRow(ctx, `INSERT INTO transfers (kind, debit_account, credit_account, currency, amount)
		SELECT 'adjustment', debit_account, credit_account, currency, amount FROM adjustments WHERE id = $1
		RETURNING id`, id).Scan(&transfer)
	if err != nil {
		if isCheckViolation(err) {
			return ErrAdjustmentOverdraw
		}
		return fmt.Errorf("posting adjustment %d: %w", id, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE adjustments SET state = 'posted', transfer_id = $2, approved_by = nullif($3, ''), decided_at = now()
		WHERE id = $1`, id, transfer, approver); err != nil {
		return fmt.Errorf("posting adjustment %d: %w", id, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE recon_cases c SET state = 'adjusted', resolved_at = now(),
			resolved_by = coalesce(nullif($2, ''), a.requested_by), reason = a.reason
		FROM adjustments a WHERE a.id = $1 AND c.id = a.case_id`, id, approver); err != nil {
		return fmt.Errorf("closing the case of adjustment %d: %w", id, err)
	}
	return nil
}

func (l *Ledger) adjustment(ctx context.Context, q querier, id int64) (Adjustment, error) {
	return l.scanAdjustment(ctx, q, q.QueryRow(ctx, `SELECT `+adjustmentColumns+` FROM adjustments a JOIN cards d ON d.id = a.card_id
		WHERE a.id = $1`, id))
}
