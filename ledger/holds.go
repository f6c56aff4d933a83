package ledger

import (
	"context"
	"fmt"
)

// ExpireHolds releases authorisation holds whose validity has passed, for
// at most limit accounts, and returns how many holds it released. Each
// account is locked before its holds, the order every request takes.
func (l *Ledger) ExpireHolds(ctx context.Context, limit int) (int, error) {
	rows, err := l.pool.Query(ctx, `SELECT DISTINCT account_id FROM holds
		WHERE state = 'active' AND expires_at <= now() LIMIT $1`, limit)
	if err != nil {
		return 0, fmt.Errorf("finding expired holds: %w", err)
	}
	var accounts []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, err
		}
		accounts = append(accounts, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	expired := 0
	for _, id := range accounts {
		err := l.Do(ctx, func(tx *Tx) error {
			if _, err := tx.tx.Exec(ctx, `SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE`, id); err != nil {
				return err
			}
			tag, err := tx.tx.Exec(ctx, `UPDATE holds SET state = 'expired', remaining = 0, updated_at = now()
				WHERE account_id = $1 AND state = 'active' AND expires_at <= now()`, id)
			expired += int(tag.RowsAffected())
			return err
		})
		if err != nil {
			return expired, fmt.Errorf("expiring holds: %w", err)
		}
	}
	return expired, nil
}
