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

type linkReversal struct{ reversal int64 }

func (l linkReversal) queue(b *pgx.Batch, requestSQL string) {
	b.Queue(`UPDATE requests SET reverses = `+requestSQL+` WHERE id = $1 AND reverses IS NULL`, l.reversal)
}

func (l linkReversal) check(n int64) error {
	if n != 1 {
		return fmt.Errorf("%w: reversal %d is already linked", errStale, l.reversal)
	}
	return nil
}

// LinkReversal marks the saved request as the original that the waiting
// reversal with the given request id undid before it arrived.
func LinkReversal(reversal int64) Effect { return linkReversal{reversal} }

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
