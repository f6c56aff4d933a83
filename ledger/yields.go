package ledger

import (
	"context"

	"fmt"
	"math/big"
	"time"

	"github.com/jackc/pgx/v5"
)

// YieldScale is the denominator of a yield rate and a fund balance: a
// rate r (income per 10,000 shares, in 0.0001 units of currency) on a
// fund of f minor units earns f*r/YieldScale minor units.
const YieldScale = 100_000_000

// YieldOf is the income of shares at rate, rounded down to the minor unit.
func YieldOf(shares, rate int64) int64 {
	var p big.Int
	p.Mul(big.NewInt(shares), big.NewInt(rate))
	return p.Quo(&p, big.NewInt(YieldScale)).Int64()
}

// YieldCards lists the cards with fund shares whose id is above after.
func (l *Ledger) YieldCards(ctx context.Context, after int64, limit int) ([]int64, error) {
	rows, err := l.pool.Query(ctx, `SELECT a.card_id FROM accounts a
		WHERE a.kind = 'fund' AND a.balance > 0 AND a.card_id > $1 ORDER BY a.card_id LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("listing cards with fund shares: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// PostYields pays each locked card its day's income at rate, once per
// card per day, in one statement, and returns what each was paid now (zero
// if paid before), in the order of cards.
func (tx *Tx) PostYields(ctx context.Context, cards []*Card, day time.Time, rate int64) ([]int64, error) {
	ids, shares, amounts, funds, omnibus := make([]int64, len(cards)), make([]int64, len(cards)), make([]int64, len(cards)), make([]int64, len(cards)), make([]int64, len(cards))
	currencies := make([]string, len(cards))
	for i, c := range cards {
		o, err := tx.l.systemAccount(ctx, tx.tx, SystemFundOmnibus, c.Currency)
		if err != nil {
			return nil, err
		}
		ids[i], shares[i], amounts[i], funds[i], omnibus[i], currencies[i] = c.ID, c.Fund, YieldOf(c.Fund, rate), c.fundID, o, c.Currency
	}
	rows, err := tx.tx.Query(ctx, `WITH u AS (
			SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[])
				AS u(card_id, shares, amount, fund, omnibus, currency)
		), y AS (
			INSERT INTO yields (card_id, day, rate, shares, amount)
			SELECT card_id, $7, $8, shares, amount FROM u ON CONFLICT (card_id, day) DO NOTHING
			RETURNING card_id, amount
		), t AS (
			INSERT INTO transfers (kind, debit_account, credit_account, currency, amount)
			SELECT $9, u.omnibus, u.fund, u.currency, y.amount FROM y JOIN u USING (card_id) WHERE y.amount > 0
		)
		SELECT card_id, amount FROM y`, ids, shares, amounts, funds, omnibus, currencies, day, rate, KindYield)
	if err != nil {
		return nil, fmt.Errorf("paying yield: %w", err)
	}
	now := map[int64]int64{}
	for rows.Next() {
		var id, amount int64
		if err := rows.Scan(&id, &amount); err != nil {
			rows.Close()
			return nil, fmt.Errorf("paying yield: %w", err)
		}
		now[id] = amount
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("paying yield: %w", err)
	}
	paid := make([]int64, len(cards))
	for i, c := range cards {
		paid[i] = now[c.ID]
		c.Fund += paid[i]
	}
	return paid, nil
}

// YieldDay is a day's income in one currency.
type YieldDay struct {
	Day       time.Time
	Currency  string
	Shares    int64 // the cards' shares, summed
	Income    int64 // the day's income on them, rounded down once
	Paid      int64 // the cards' incomes, each rounded down
	Remainder int64 // Income - Paid, kept in the yield remainder account
}

// CloseYieldDay books what the cards' roundings left of a day's income in
// the yield remainder account, once per day and currency, after every
// card's yield of the day has been posted.
func (l *Ledger) CloseYieldDay(ctx context.Context, day time.Time, rate int64) ([]YieldDay, error) {
	var out []YieldDay
	err := l.Do(ctx, func(tx *Tx) error {
		out = out[:0]
		rows, err := tx.tx.Query(ctx, `SELECT c.currency, sum(y.shares)::bigint, sum(y.amount)::bigint
			FROM yields y JOIN cards c ON c.id = y.card_id WHERE y.day = $1 AND y.rate = $2 GROUP BY c.currency`, day, rate)
		if err != nil {
			return err
		}
		for rows.Next() {
			d := YieldDay{Day: day}
			if err := rows.Scan(&d.Currency, &d.Shares, &d.Paid); err != nil {
				rows.Close()
				return err
			}
			d.Income = YieldOf(d.Shares, rate)
			d.Remainder = d.Income - d.Paid
			out = append(out, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, d := range out {
			tag, err := tx.tx.Exec(ctx, `INSERT INTO yield_days (day, currency, rate, shares, income, paid, remainder)
				VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (day, currency) DO NOTHING`,
				day, d.Currency, rate, d.Shares, d.Income, d.Paid, d.Remainder)
			if err != nil {
				return fmt.Errorf("closing the yield day: %w", err)
			}
			if tag.RowsAffected() == 0 || d.Remainder == 0 {
				continue
			}
			omnibus, err := tx.l.systemAccount(ctx, tx.tx, SystemFundOmnibus, d.Currency)
			if err != nil {
				return err
			}
			remainder, err := tx.l.systemAccount(ctx, tx.tx, SystemYieldRemainder, d.Currency)
			if err != nil {
				return err
			}
			if _, err := tx.tx.Exec(ctx, `INSERT INTO transfers (kind, debit_account, credit_account, currency, amount)
				VALUES ($1, $2, $3, $4, $5)`, KindYield, omnibus, remainder, d.Currency, d.Remainder); err != nil {
				return fmt.Errorf("booking the yield remainder: %w", err)
			}
		}
		return nil
	})
	return out, err
}
