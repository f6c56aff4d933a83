package ledger

import (
	"context"
	"fmt"
	"time"
)

// Movement is one change to a card's money: a transfer in or out of one
// of its accounts, or a hold.
type Movement struct {
	Time     time.Time `json:"time"`
	Type     string    `json:"type"`    // transfer or hold
	Kind     string    `json:"kind"`    // purchase, cash, refund, ... or the hold's state
	Account  string    `json:"account"` // cash, fund or overdraft
	Amount   int64     `json:"amount"`  // signed: money in is positive
	MTI      string    `json:"mti,omitempty"`
	STAN     string    `json:"stan,omitempty"`
	RRN      string    `json:"rrn,omitempty"`
	Response string    `json:"response_code,omitempty"`
	ID       int64     `json:"id"`
}

// Movements lists a card's movements, newest first.
func (l *Ledger) Movements(ctx context.Context, cardID int64, limit int) ([]Movement, error) {
	rows, err := l.pool.Query(ctx, `
		WITH card AS (SELECT id FROM cards WHERE id = $1),
		accts AS (SELECT a.id, a.kind FROM accounts a JOIN card ON a.card_id = card.id)
		SELECT * FROM (
			SELECT t.created_at, 'transfer' AS type, t.kind, a.kind AS account,
				CASE WHEN t.credit_account = a.id THEN t.amount ELSE -t.amount END AS amount,
				coalesce(r.mti, ''), coalesce(r.stan, ''), coalesce(r.rrn, ''), coalesce(r.response_code, ''), t.id
			FROM accts a JOIN transfers t ON t.debit_account = a.id OR t.credit_account = a.id
			LEFT JOIN requests r ON r.id = t.request_id
			UNION ALL
			SELECT h.created_at, 'hold', h.state, a.kind, -h.amount,
				r.mti, r.stan, r.rrn, r.response_code, h.id
			FROM accts a JOIN holds h ON h.account_id = a.id
			JOIN requests r ON r.id = h.request_id
		) m ORDER BY 1 DESC, 10 DESC LIMIT $2`, cardID, limit)
	if err != nil {
		return nil, fmt.Errorf("listing movements: %w", err)
	}
	defer rows.Close()
	out := []Movement{}
	for rows.Next() {
		var m Movement
		if err := rows.Scan(&m.Time, &m.Type, &m.Kind, &m.Account, &m.Amount, &m.MTI, &m.STAN, &m.RRN, &m.Response, &m.ID); err != nil {
			return nil, fmt.Errorf("listing movements: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
