package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Sweep states.
const (
	SweepPending   = "pending"
	SweepConfirmed = "confirmed"
	SweepFailed    = "failed"

	KindSweep        = "sweep"
	KindSubscription = "subscription"
	KindYield        = "yield"
)

// SweepCard is a card with sweeping on.
type SweepCard struct {
	ID        int64
	Threshold *int64 // nil: the configured threshold
}

// SweepCards lists cards with sweeping on whose id is above after, by id.
func (l *Ledger) SweepCards(ctx context.Context, after int64, limit int) ([]SweepCard, error) {
	rows, err := l.pool.Query(ctx, `SELECT id, sweep_threshold FROM cards
		WHERE sweep_enabled AND status = 'active' AND id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("listing cards to sweep: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (SweepCard, error) {
		var c SweepCard
		err := r.Scan(&c.ID, &c.Threshold)
		return c, err
	})
}

// SetSweep turns a card's sweeping on or off and sets the amount it keeps
// (nil: the configured threshold).
func (l *Ledger) SetSweep(ctx context.Context, pan string, enabled bool, threshold *int64) error {
	if threshold != nil && *threshold < 0 {
		return fmt.Errorf("%w: the threshold cannot be negative", ErrInvalidCard)
	}
	tag, err := l.pool.Exec(ctx, `UPDATE cards SET sweep_enabled = $2, sweep_threshold = $3 WHERE pan = $1`, pan, enabled, threshold)
	if err != nil {
		return fmt.Errorf("setting sweep: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrUnknownCard
	}
	return nil
}

// SweepSettings reads a card's sweep settings.
func (l *Ledger) SweepSettings(ctx context.Context, pan string) (bool, *int64, error) {
	var (
		on        bool
		threshold *int64
	)
	err := l.pool.QueryRow(ctx, `SELECT sweep_enabled, sweep_threshold FROM cards WHERE pan = $1`, pan).Scan(&on, &threshold)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil, ErrUnknownCard
	}
	return on, threshold, err
}

// SweepRecord is a sweep of a card's excess into the fund.
type SweepRecord struct {
	ID        string
	CardID    int64
	Day       time.Time
	Amount    int64
	Currency  string
	State     string
	ConfirmOn time.Time
}

// NewSweep describes the sweep of a card on a day.
type NewSweep struct {
	ID        string
	Day       time.Time // the trading day
	ConfirmOn time.Time // the next trading day
	Threshold int64     // kept in the card
	MinSweep  int64     // smaller excesses stay
}

// Sweep moves the locked card's available balance above the threshold
// into a pending subscription, once per card per day. Money held for
// authorisations is not available, so it is never swept. It returns the
// day's sweep, whether made now or earlier, or nil if there is nothing to
// sweep.
func (tx *Tx) Sweep(ctx context.Context, c *Card, n NewSweep) (*SweepRecord, error) {
	var s SweepRecord
	err := tx.tx.QueryRow(ctx, `SELECT id, card_id, day, amount, currency, state, confirm_on FROM sweeps
		WHERE card_id = $1 AND day = $2`, c.ID, n.Day).Scan(&s.ID, &s.CardID, &s.Day, &s.Amount, &s.Currency, &s.State, &s.ConfirmOn)
	if err == nil {
		return &s, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("reading the day's sweep: %w", err)
	}
	amount := c.Available() - n.Threshold
	if amount < n.MinSweep || amount <= 0 {
		return nil, nil
	}
	subscription, err := tx.l.systemAccount(ctx, tx.tx, SystemFundSubscription, c.Currency)
	if err != nil {
		return nil, err
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO sweeps (id, card_id, day, amount, currency, confirm_on) VALUES ($1, $2, $3, $4, $5, $6)`,
		n.ID, c.ID, n.Day, amount, c.Currency, n.ConfirmOn)
	b.Queue(`INSERT INTO transfers (sweep_id, kind, debit_account, credit_account, currency, amount)
		VALUES ($1, $2, $3, $4, $5, $6)`, n.ID, KindSweep, c.cashID, subscription, c.Currency, amount)
	if err := tx.tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("sweeping: %w", err)
	}
	c.Cash -= amount
	return &SweepRecord{ID: n.ID, CardID: c.ID, Day: n.Day, Amount: amount, Currency: c.Currency, State: SweepPending, ConfirmOn: n.ConfirmOn}, nil
}

// ResolveSweep settles a pending sweep on the locked card: confirmed, the
// subscription becomes fund shares; refused, the money goes back to the
// card's cash. It reports false, changing nothing, when already settled.
func (tx *Tx) ResolveSweep(ctx context.Context, c *Card, id string, confirmed bool) (bool, error) {
	state := SweepFailed
	if confirmed {
		state = SweepConfirmed
	}
	var amount int64
	err := tx.tx.QueryRow(ctx, `UPDATE sweeps SET state = $3, resolved_at = now()
		WHERE id = $1 AND card_id = $2 AND state = 'pending' RETURNING amount`, id, c.ID, state).Scan(&amount)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("settling sweep %s: %w", id, err)
	}
	subscription, err := tx.l.systemAccount(ctx, tx.tx, SystemFundSubscription, c.Currency)
	if err != nil {
		return false, err
	}
	var effects []Effect
	if confirmed {
		effects = []Effect{c.transfer(KindSubscription, subscription, c.fundID, amount)}
		c.Fund += amount
	} else {
		effects = c.credit(subscription, KindSweep, amount)
	}
	b := &pgx.Batch{}
	for _, e := range effects {
		t := e.(transfer)
		b.Queue(`INSERT INTO transfers (sweep_id, kind, debit_account, credit_account, currency, amount)
			VALUES ($1, $2, $3, $4, $5, $6)`, id, t.kind, t.debit, t.credit, t.currency, t.amount)
	}
	return true, tx.tx.SendBatch(ctx, b).Close()
}

// SweepByID reads one sweep.
func (l *Ledger) SweepByID(ctx context.Context, id string) (*SweepRecord, error) {
	var s SweepRecord
	err := l.pool.QueryRow(ctx, `SELECT id, card_id, day, amount, currency, state, confirm_on FROM sweeps WHERE id = $1`, id).
		Scan(&s.ID, &s.CardID, &s.Day, &s.Amount, &s.Currency, &s.State, &s.ConfirmOn)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("ledger: no sweep %s", id)
	}
	return &s, err
}
