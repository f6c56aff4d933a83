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

// PostYield pays the locked card its day's income at rate, once per card
// per day, and returns it (zero if paid before).
func (tx *Tx) PostYield(ctx context.Context, c *Card, day time.Time, rate int64) (int64, error) {
	amount := YieldOf(c.Fund, rate)
	tag, err := tx.tx.Exec(ctx, `INSERT INTO yields (card_id, day, rate, shares, amount) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (card_id, day) DO NOTHING`, c.ID, day, rate, c.Fund, amount)
	if err != nil {
		return 0, fmt.Errorf("recording yield: %w", err)
	}
	if tag.RowsAffected() == 0 || amount == 0 {
		return 0, nil
	}
	omnibus, err := tx.l.systemAccount(ctx, tx.tx, SystemFundOmnibus, c.Currency)
	if err != nil {
		return 0, err
	}
	_, err = tx.tx.Exec(ctx, `INSERT INTO transfers (kind, debit_account, credit_account, currency, amount)
		VALUES ($1, $2, $3, $4, $5)`, KindYield, omnibus, c.fundID, c.Currency, amount)
	if err != nil {
		return 0, fmt.Errorf("paying yield: %w", err)
	}
	c.Fund += amount
	return amount, nil
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
