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
func (l *Ledger) SetSweep(ctx context.Context, cardID int64, enabled bool, threshold *int64) error {
	if threshold != nil && *threshold < 0 {
		return fmt.Errorf("%w: the threshold cannot be negative", ErrInvalidCard)
	}
	tag, err := l.pool.Exec(ctx, `UPDATE cards SET sweep_enabled = $2, sweep_threshold = $3 WHERE id = $1`, cardID, enabled, threshold)
	if err != nil {
		return fmt.Errorf("setting sweep: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrUnknownCard
	}
	return nil
}

// SweepSettings reads a card's sweep settings.
func (l *Ledger) SweepSettings(ctx context.Context, cardID int64) (bool, *int64, error) {
	var (
		on        bool
		threshold *int64
	)
	err := l.pool.QueryRow(ctx, `SELECT sweep_enabled, sweep_threshold FROM cards WHERE id = $1`, cardID).Scan(&on, &threshold)
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
	// Made is true when SweepMany made it, false when it found it.
	Made bool
}

// NewSweep describes the sweep of a card on a day.
type NewSweep struct {
	ID        string
	Day       time.Time // the trading day
	ConfirmOn time.Time // the next trading day
	Threshold int64     // kept in the card
	MinSweep  int64     // smaller excesses stay
}

// SweepMany moves each locked card's available balance above the threshold
// into a pending subscription, once per card per day. Money held for
// authorisations is not available, so it is never swept. cards[i] is
// swept by ns[i], all in one read and one pipelined write. It returns each
// card's sweep of the day, whether made now (Made) or earlier, or nil if
// there is nothing to sweep.
func (tx *Tx) SweepMany(ctx context.Context, cards []*Card, ns []NewSweep) ([]*SweepRecord, error) {
	if len(cards) != len(ns) {
		return nil, fmt.Errorf("ledger: %d cards for %d sweeps", len(cards), len(ns))
	}
	// A date is compared as the database keeps it: the day the time
	// falls on where it is.
	type cardDay struct {
		card int64
		day  string
	}
	ids := make([]int64, len(cards))
	days := make([]time.Time, len(cards))
	for i, c := range cards {
		ids[i], days[i] = c.ID, ns[i].Day
	}
	rows, err := tx.tx.Query(ctx, `SELECT s.id, s.card_id, s.day, s.amount, s.currency, s.state, s.confirm_on
		FROM unnest($1::bigint[], $2::date[]) AS u(card_id, day) JOIN sweeps s ON s.card_id = u.card_id AND s.day = u.day`, ids, days)
	if err != nil {
		return nil, fmt.Errorf("reading the day's sweeps: %w", err)
	}
	earlier := map[cardDay]*SweepRecord{}
	for rows.Next() {
		var s SweepRecord
		if err := rows.Scan(&s.ID, &s.CardID, &s.Day, &s.Amount, &s.Currency, &s.State, &s.ConfirmOn); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading the day's sweeps: %w", err)
		}
		earlier[cardDay{s.CardID, s.Day.Format(time.DateOnly)}] = &s
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the day's sweeps: %w", err)
	}
	out := make([]*SweepRecord, len(cards))
	var (
		sweepIDs, currencies    []string
		cardIDs, amounts, debit []int64
		credit                  []int64
		sweepDays, confirmOn    []time.Time
	)
	for i, c := range cards {
		n := ns[i]
		if s := earlier[cardDay{c.ID, n.Day.Format(time.DateOnly)}]; s != nil {
			out[i] = s
			continue
		}
		amount := c.Available() - n.Threshold
		if amount < n.MinSweep || amount <= 0 {
			continue
		}
		subscription, err := tx.l.systemAccount(ctx, tx.tx, SystemFundSubscription, c.Currency)
		if err != nil {
			return nil, err
		}
		sweepIDs, cardIDs, sweepDays, amounts = append(sweepIDs, n.ID), append(cardIDs, c.ID), append(sweepDays, n.Day), append(amounts, amount)
		currencies, confirmOn = append(currencies, c.Currency), append(confirmOn, n.ConfirmOn)
		debit, credit = append(debit, c.cashID), append(credit, subscription)
		c.Cash -= amount
		out[i] = &SweepRecord{ID: n.ID, CardID: c.ID, Day: n.Day, Amount: amount, Currency: c.Currency, State: SweepPending, ConfirmOn: n.ConfirmOn, Made: true}
	}
	if len(sweepIDs) == 0 {
		return out, nil
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO sweeps (id, card_id, day, amount, currency, confirm_on)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::date[], $4::bigint[], $5::text[], $6::date[])`,
		sweepIDs, cardIDs, sweepDays, amounts, currencies, confirmOn)
	b.Queue(`INSERT INTO transfers (sweep_id, kind, debit_account, credit_account, currency, amount)
		SELECT id, $2, debit, credit, currency, amount FROM unnest($1::text[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[])
			AS u(id, debit, credit, currency, amount)`, sweepIDs, KindSweep, debit, credit, currencies, amounts)
	if err := tx.tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("sweeping: %w", err)
	}
	return out, nil
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

// PendingSweeps lists the pending sweeps of a day of the cards whose id is
// in (after, upTo], by card: what a sweep batch run before made, whatever
// has become of the card since.
func (l *Ledger) PendingSweeps(ctx context.Context, day time.Time, after, upTo int64) ([]SweepRecord, error) {
	rows, err := l.pool.Query(ctx, `SELECT id, card_id, day, amount, currency, state, confirm_on FROM sweeps
		WHERE day = $1 AND card_id > $2 AND card_id <= $3 AND state = 'pending' ORDER BY card_id`, day, after, upTo)
	if err != nil {
		return nil, fmt.Errorf("listing pending sweeps: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (SweepRecord, error) {
		var s SweepRecord
		err := r.Scan(&s.ID, &s.CardID, &s.Day, &s.Amount, &s.Currency, &s.State, &s.ConfirmOn)
		return s, err
	})
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
