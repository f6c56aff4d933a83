package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Effect is one write a decision implies: a transfer, or a hold placed or
// changed. Effects are planned by Card's methods and written by Tx.Save.
type Effect interface {
	// queue adds the effect's statement to b. requestSQL is the SQL
	// expression for the id of the request being saved, or NULL.
	queue(b *pgx.Batch, requestSQL string)
	// check verifies the statement's result.
	check(tag int64) error
}

// Transfer kinds.
const (
	KindOpening   = "opening"
	KindPurchase  = "purchase"
	KindCash      = "cash"
	KindRefund    = "refund"
	KindDeposit   = "deposit"
	KindCapture   = "capture"
	KindReversal  = "reversal"
	KindRepayment = "repayment"
)

type transfer struct {
	kind          string
	debit, credit int64
	currency      string
	amount        int64
}

func (t transfer) queue(b *pgx.Batch, requestSQL string) {
	b.Queue(`INSERT INTO transfers (request_id, kind, debit_account, credit_account, currency, amount)
		VALUES (`+requestSQL+`, $1, $2, $3, $4, $5)`, t.kind, t.debit, t.credit, t.currency, t.amount)
}

func (t transfer) check(int64) error { return nil }

type placeHold struct {
	account, amount int64
	expires         time.Time
}

func (h placeHold) queue(b *pgx.Batch, requestSQL string) {
	b.Queue(`INSERT INTO holds (request_id, account_id, amount, remaining, expires_at)
		VALUES (`+requestSQL+`, $1, $2, $2, $3)`, h.account, h.amount, h.expires)
}

func (placeHold) check(int64) error { return nil }

type changeHold struct {
	id, remaining int64
	state         string
}

func (h changeHold) queue(b *pgx.Batch, _ string) {
	b.Queue(`UPDATE holds SET remaining = $2, state = $3, updated_at = now() WHERE id = $1 AND state = 'active'`,
		h.id, h.remaining, h.state)
}

func (h changeHold) check(n int64) error {
	if n != 1 {
		return fmt.Errorf("%w: hold %d is no longer active", errStale, h.id)
	}
	return nil
}

type linkReversal struct {
	reversal int64
	stands   *int64
}

func (l linkReversal) queue(b *pgx.Batch, requestSQL string) {
	b.Queue(`UPDATE requests SET reverses = `+requestSQL+`, waiting = false, stands = $2 WHERE id = $1 AND waiting`,
		l.reversal, l.stands)
}

func (l linkReversal) check(n int64) error {
	if n != 1 {
		return fmt.Errorf("%w: reversal %d is already linked", errStale, l.reversal)
	}
	return nil
}

// LinkReversal marks the saved request as the original that the waiting
// reversal with the given request id undid before it arrived; stands,
// when the saved request moved money, is what of it the reversal leaves
// standing (nil: it moved nothing of it).
func LinkReversal(reversal int64, stands *int64) Effect { return linkReversal{reversal, stands} }

// apply writes effects that belong to no request.
func (tx *Tx) apply(ctx context.Context, effects []Effect) error {
	if len(effects) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, e := range effects {
		e.queue(b, "NULL")
	}
	return tx.sendEffects(ctx, b, effects, nil)
}

func (tx *Tx) sendEffects(ctx context.Context, b *pgx.Batch, effects []Effect, requestID *int64) error {
	br := tx.tx.SendBatch(ctx, b)
	defer br.Close()
	if requestID != nil {
		if err := br.QueryRow().Scan(requestID); err != nil {
			return fmt.Errorf("saving request: %w", err)
		}
	}
	for _, e := range effects {
		tag, err := br.Exec()
		if err != nil {
			return fmt.Errorf("writing %T: %w", e, err)
		}
		if err := e.check(tag.RowsAffected()); err != nil {
			return err
		}
	}
	return br.Close()
}

// Exception kinds.
const (
	// ExceptionForeignCurrency is an advice, completion or reversal in a
	// currency the card does not hold: acknowledged, not posted.
	ExceptionForeignCurrency = "foreign_currency"
)

// Exception is a message the bank believes moved money that the switch did
// not post, kept for an operator.
type Exception struct {
	ID         int64      `json:"id"`
	Kind       string     `json:"kind"`
	RequestID  int64      `json:"request_id"`
	CardID     int64      `json:"-"`
	CardRef    string     `json:"card_id,omitempty"`
	Masked     string     `json:"-"` // the card's PAN, masked
	Bank       string     `json:"bank"`
	Currency   string     `json:"currency"`
	Amount     int64      `json:"amount"`
	Detail     string     `json:"detail"`
	MTI        string     `json:"mti"`
	STAN       string     `json:"stan"`
	RRN        string     `json:"rrn"`
	CreatedAt  time.Time  `json:"created_at"`
	ResolvedAt *time.Time `json:"resolved_at,omitempty"`
	Resolution string     `json:"resolution,omitempty"`
}

type raiseException struct{ e Exception }

func (r raiseException) queue(b *pgx.Batch, requestSQL string) {
	var card *int64
	if r.e.CardID != 0 {
		card = &r.e.CardID
	}
	b.Queue(`INSERT INTO exceptions (kind, request_id, card_id, bank, currency, amount, detail)
		VALUES ($1, `+requestSQL+`, $2, $3, $4, $5, $6)`, r.e.Kind, card, r.e.Bank, r.e.Currency, r.e.Amount, r.e.Detail)
}

func (raiseException) check(int64) error { return nil }

// RaiseException records an exception for the request being saved.
func RaiseException(e Exception) Effect { return raiseException{e} }
