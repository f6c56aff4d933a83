package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Errors of instant redemption.
var (
	ErrQuotaExceeded = errors.New("ledger: instant-redemption quota exceeded")
	ErrFenced        = errors.New("ledger: card lock superseded by a newer holder")
	ErrUnknownOrder  = errors.New("ledger: unknown order")
)

// Redemption order states and purposes.
const (
	OrderPending   = "pending"
	OrderConfirmed = "confirmed"
	OrderFailed    = "failed"

	PurposeShortfall   = "shortfall"
	PurposeTransferOut = "transfer_out"

	KindRedemption = "redemption"
)

// Order is a redemption order to the fund company.
type Order struct {
	ID         string     `json:"id"`
	CardID     int64      `json:"-"`
	CardRef    string     `json:"-"`
	Masked     string     `json:"-"` // the card's PAN, masked
	Amount     int64      `json:"amount"`
	Currency   string     `json:"currency"`
	Purpose    string     `json:"purpose"`
	State      string     `json:"state"`
	QuotaDay   time.Time  `json:"quota_day"`
	Fence      int64      `json:"fence"`
	Checks     int        `json:"checks"`
	LastError  string     `json:"last_error,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	ResolvedAt *time.Time `json:"resolved_at,omitempty"`
}

// Fence raises the card's fencing token to token, refusing with ErrFenced
// when a newer lock holder has already written.
func (tx *Tx) Fence(ctx context.Context, cardID, token int64) error {
	tag, err := tx.tx.Exec(ctx, `UPDATE cards SET fence = $2 WHERE id = $1 AND fence <= $2`, cardID, token)
	if err != nil {
		return fmt.Errorf("fencing card: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return ErrFenced
	}
	return nil
}

// NewRedemption is an order about to be placed.
type NewRedemption struct {
	ID      string
	Amount  int64
	Purpose string
	Day     time.Time // the quota day it counts on
	Quota   int64     // the day's quota per card
	Fence   int64     // token of the lock it is placed under
}

// StartRedemption records a pending order for the locked card c: the
// amount leaves the card's fund position for the redeeming account, and
// the day's quota is charged, all or nothing.
func (tx *Tx) StartRedemption(ctx context.Context, c *Card, n NewRedemption) error {
	switch {
	case n.Amount <= 0 || n.Amount > c.Fund:
		return ErrInsufficientFunds
	case c.RedeemedToday+n.Amount > n.Quota:
		return ErrQuotaExceeded
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO redemption_orders (id, card_id, amount, currency, purpose, quota_day, fence)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, n.ID, c.ID, n.Amount, c.Currency, n.Purpose, n.Day, n.Fence)
	b.Queue(`INSERT INTO redemption_quota AS q (card_id, day, used) SELECT $1::bigint, $2::date, $3::bigint WHERE $3::bigint <= $4::bigint
		ON CONFLICT (card_id, day) DO UPDATE SET used = q.used + EXCLUDED.used WHERE q.used + EXCLUDED.used <= $4::bigint`,
		c.ID, n.Day, n.Amount, n.Quota)
	b.Queue(`INSERT INTO transfers (order_id, kind, debit_account, credit_account, currency, amount)
		VALUES ($1, $2, $3, $4, $5, $6)`, n.ID, KindRedemption, c.fundID, c.redeemingID, c.Currency, n.Amount)
	br := tx.tx.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("placing order: %w", err)
	}
	tag, err := br.Exec()
	if err != nil {
		return fmt.Errorf("charging quota: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return ErrQuotaExceeded
	}
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("moving fund shares: %w", err)
	}
	if err := br.Close(); err != nil {
		return err
	}
	c.Fund -= n.Amount
	c.RedeemedToday += n.Amount
	return nil
}

// ConfirmRedemption lands a pending order's money in the locked card's
// cash account (repaying what the card owes first). It reports false,
// changing nothing, when the order was already resolved.
func (tx *Tx) ConfirmRedemption(ctx context.Context, c *Card, id string) (bool, error) {
	o, err := tx.resolve(ctx, c, id, OrderConfirmed, "")
	if o == nil || err != nil {
		return false, err
	}
	effects := c.credit(c.redeemingID, KindRedemption, o.Amount)
	return true, tx.applyForOrder(ctx, id, effects)
}

// FailRedemption closes a pending order the fund company refused: the
// shares go back to the card's fund position and the quota is given back.
// It reports false, changing nothing, when the order was already resolved.
func (tx *Tx) FailRedemption(ctx context.Context, c *Card, id, reason string) (bool, error) {
	o, err := tx.resolve(ctx, c, id, OrderFailed, reason)
	if o == nil || err != nil {
		return false, err
	}
	_, err = tx.tx.Exec(ctx, `UPDATE redemption_quota SET used = used - $3 WHERE card_id = $1 AND day = $2`,
		o.CardID, o.QuotaDay, o.Amount)
	if err != nil {
		return false, fmt.Errorf("giving quota back: %w", err)
	}
	if o.QuotaDay.Equal(c.day) {
		c.RedeemedToday -= o.Amount
	}
	c.Fund += o.Amount
	return true, tx.applyForOrder(ctx, id, []Effect{c.transfer(KindRedemption, c.redeemingID, c.fundID, o.Amount)})
}

func (tx *Tx) resolve(ctx context.Context, c *Card, id, state, reason string) (*Order, error) {
	var o Order
	err := tx.tx.QueryRow(ctx, `UPDATE redemption_orders SET state = $2, resolved_at = now(), last_error = nullif($3, '')
		WHERE id = $1 AND state = 'pending' RETURNING card_id, amount, quota_day`, id, state, reason).
		Scan(&o.CardID, &o.Amount, &o.QuotaDay)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("resolving order %s: %w", id, err)
	}
	if o.CardID != c.ID {
		return nil, fmt.Errorf("ledger: order %s is not card %d's", id, c.ID)
	}
	return &o, nil
}

// applyForOrder writes effects that belong to an order.
func (tx *Tx) applyForOrder(ctx context.Context, id string, effects []Effect) error {
	b := &pgx.Batch{}
	for _, e := range effects {
		t, ok := e.(transfer)
		if !ok {
			return fmt.Errorf("ledger: %T cannot belong to an order", e)
		}
		b.Queue(`INSERT INTO transfers (order_id, kind, debit_account, credit_account, currency, amount)
			VALUES ($1, $2, $3, $4, $5, $6)`, id, t.kind, t.debit, t.credit, t.currency, t.amount)
	}
	return tx.sendEffects(ctx, b, effects, nil)
}

// orderColumns are read from redemption_orders o joined with cards c.
const orderColumns = `o.id, o.card_id, c.ref, ` + maskedColumn + `, o.amount, o.currency, o.purpose, o.state, o.quota_day, o.fence, o.checks,
	coalesce(o.last_error, ''), o.created_at, o.resolved_at`

func scanOrders(rows pgx.Rows) ([]Order, error) {
	defer rows.Close()
	out := []Order{}
	for rows.Next() {
		var o Order
		if err := rows.Scan(&o.ID, &o.CardID, &o.CardRef, &o.Masked, &o.Amount, &o.Currency, &o.Purpose, &o.State, &o.QuotaDay, &o.Fence,
			&o.Checks, &o.LastError, &o.CreatedAt, &o.ResolvedAt); err != nil {
			return nil, fmt.Errorf("reading orders: %w", err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// Order reads one order.
func (l *Ledger) Order(ctx context.Context, id string) (*Order, error) {
	rows, err := l.pool.Query(ctx, `SELECT `+orderColumns+` FROM redemption_orders o JOIN cards c ON c.id = o.card_id
		WHERE o.id = $1`, id)
	if err != nil {
		return nil, fmt.Errorf("reading order: %w", err)
	}
	os, err := scanOrders(rows)
	if err != nil {
		return nil, err
	}
	if len(os) == 0 {
		return nil, ErrUnknownOrder
	}
	return &os[0], nil
}

// CardOrders lists a card's orders, newest first.
func (l *Ledger) CardOrders(ctx context.Context, cardID int64, limit int) ([]Order, error) {
	rows, err := l.pool.Query(ctx, `SELECT `+orderColumns+` FROM redemption_orders o JOIN cards c ON c.id = o.card_id
		WHERE o.card_id = $1 ORDER BY o.created_at DESC, o.id DESC LIMIT $2`, cardID, limit)
	if err != nil {
		return nil, fmt.Errorf("listing orders: %w", err)
	}
	return scanOrders(rows)
}

// PendingOrders lists the ids of every pending order.
func (l *Ledger) PendingOrders(ctx context.Context) ([]string, error) {
	rows, err := l.pool.Query(ctx, `SELECT id FROM redemption_orders WHERE state = 'pending'`)
	if err != nil {
		return nil, fmt.Errorf("listing pending orders: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// RecordOrderCheck counts a status check of a pending order and notes why
// it is still pending.
func (l *Ledger) RecordOrderCheck(ctx context.Context, id, reason string) error {
	_, err := l.pool.Exec(ctx, `UPDATE redemption_orders SET checks = checks + 1, last_error = nullif($2, '')
		WHERE id = $1 AND state = 'pending'`, id, reason)
	if err != nil {
		return fmt.Errorf("recording an order check: %w", err)
	}
	return nil
}
