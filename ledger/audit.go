package ledger

import (
	"context"
	"fmt"
	"strings"
)

// Audit checks the ledger's books: every card account's stored balance
// equals its transfers, its held amount equals its active holds, the sum
// over all accounts of each currency is zero, the shares being redeemed
// are the pending orders', and each day's quota used is its orders'. It returns nil when the
// books balance and an error naming each discrepancy otherwise.
func (l *Ledger) Audit(ctx context.Context) error {
	return Audit(ctx, l.pool)
}

// Audit is Ledger.Audit on any connection to a migrated database.
func Audit(ctx context.Context, q querier) error {
	rows, err := q.Query(ctx, `
		WITH moved AS (
			SELECT account, sum(delta) AS derived FROM (
				SELECT debit_account AS account, -amount AS delta FROM transfers
				UNION ALL
				SELECT credit_account, amount FROM transfers) d
			GROUP BY account),
		held AS (
			SELECT account_id, sum(remaining) AS held FROM holds WHERE state = 'active' GROUP BY account_id)
		SELECT format('account %s (%s): stored balance %s, transfers say %s', a.id, a.kind, a.balance, coalesce(m.derived, 0))
		FROM accounts a LEFT JOIN moved m ON m.account = a.id
		WHERE a.card_id IS NOT NULL AND a.balance <> coalesce(m.derived, 0)
		UNION ALL
		SELECT format('account %s: held %s, active holds say %s', a.id, a.held, coalesce(h.held, 0))
		FROM accounts a LEFT JOIN held h ON h.account_id = a.id
		WHERE a.held <> coalesce(h.held, 0)
		UNION ALL
		SELECT format('currency %s: accounts sum to %s, not zero', a.currency,
			sum(CASE WHEN a.card_id IS NULL THEN coalesce(m.derived, 0) ELSE a.balance END))
		FROM accounts a LEFT JOIN moved m ON m.account = a.id
		GROUP BY a.currency
		HAVING sum(CASE WHEN a.card_id IS NULL THEN coalesce(m.derived, 0) ELSE a.balance END) <> 0
		UNION ALL
		SELECT format('currency %s: %s being redeemed, pending orders say %s', a.currency, coalesce(m.derived, 0),
			coalesce((SELECT sum(o.amount) FROM redemption_orders o WHERE o.currency = a.currency AND o.state = 'pending'), 0))
		FROM accounts a LEFT JOIN moved m ON m.account = a.id
		WHERE a.kind = 'fund_redeeming' AND coalesce(m.derived, 0) <>
			coalesce((SELECT sum(o.amount) FROM redemption_orders o WHERE o.currency = a.currency AND o.state = 'pending'), 0)
		UNION ALL
		SELECT format('card %s on %s: quota used %s, orders say %s', q.card_id, q.day, q.used, coalesce(sum(o.amount), 0))
		FROM redemption_quota q LEFT JOIN redemption_orders o
			ON o.card_id = q.card_id AND o.quota_day = q.day AND o.state <> 'failed'
		GROUP BY q.card_id, q.day, q.used
		HAVING q.used <> coalesce(sum(o.amount), 0)
		UNION ALL
		SELECT format('adjustment %s is posted, but transfer %s does not move its amount between its accounts', a.id, a.transfer_id)
		FROM adjustments a LEFT JOIN transfers t ON t.id = a.transfer_id
		WHERE a.state = 'posted' AND (t.id IS NULL OR t.kind <> 'adjustment' OR t.amount <> a.amount
			OR t.debit_account <> a.debit_account OR t.credit_account <> a.credit_account)
		UNION ALL
		SELECT format('transfer %s is an adjustment that no posted adjustment made', t.id)
		FROM transfers t WHERE t.kind = 'adjustment' AND NOT EXISTS (SELECT 1 FROM adjustments a WHERE a.transfer_id = t.id)
		UNION ALL
		SELECT format('case %s is adjusted without a posted adjustment', c.id)
		FROM recon_cases c WHERE c.state = 'adjusted'
			AND NOT EXISTS (SELECT 1 FROM adjustments a WHERE a.case_id = c.id AND a.state = 'posted')`)
	if err != nil {
		return fmt.Errorf("auditing ledger: %w", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return fmt.Errorf("auditing ledger: %w", err)
		}
		problems = append(problems, p)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("auditing ledger: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("ledger: books do not balance:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}
