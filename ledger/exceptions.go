package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Errors of exceptions.
var (
	// ErrUnknownException is an exception id the ledger does not hold, or
	// one already resolved.
	ErrUnknownException = errors.New("ledger: no such open exception")
	ErrNoResolution     = errors.New("ledger: an exception is resolved with a note of what was done")
)

// exceptionColumns are read from exceptions x joined with requests r and,
// left, cards c.
const exceptionColumns = `x.id, x.kind, x.request_id, coalesce(x.card_id, 0), coalesce(c.ref, ''), coalesce(` + maskedColumn + `, ''),
	x.bank, x.currency, x.amount, x.detail, r.mti, r.stan, r.rrn, x.created_at, x.resolved_at, coalesce(x.resolution, '')`

// Exceptions lists exceptions, newest first: open ones only unless all.
func (l *Ledger) Exceptions(ctx context.Context, all bool, limit int) ([]Exception, error) {
	rows, err := l.pool.Query(ctx, `SELECT `+exceptionColumns+`
		FROM exceptions x JOIN requests r ON r.id = x.request_id LEFT JOIN cards c ON c.id = x.card_id
		WHERE $1 OR x.resolved_at IS NULL ORDER BY x.id DESC LIMIT $2`, all, limit)
	if err != nil {
		return nil, fmt.Errorf("listing exceptions: %w", err)
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Exception, error) {
		var e Exception
		err := row.Scan(&e.ID, &e.Kind, &e.RequestID, &e.CardID, &e.CardRef, &e.Masked, &e.Bank, &e.Currency, &e.Amount, &e.Detail,
			&e.MTI, &e.STAN, &e.RRN, &e.CreatedAt, &e.ResolvedAt, &e.Resolution)
		return e, err
	})
}

// OpenExceptions counts the exceptions no operator has resolved.
func (l *Ledger) OpenExceptions(ctx context.Context) (int64, error) {
	var n int64
	err := l.pool.QueryRow(ctx, `SELECT count(*) FROM exceptions WHERE resolved_at IS NULL`).Scan(&n)
	return n, err
}

// ResolveException closes an open exception with what the operator did
// about it. Nothing moves: money the bank and the switch disagree on is
// put right with an ordinary adjustment, made on its own.
func (l *Ledger) ResolveException(ctx context.Context, id int64, resolution string) error {
	resolution = strings.TrimSpace(resolution)
	if resolution == "" {
		return ErrNoResolution
	}
	tag, err := l.pool.Exec(ctx, `UPDATE exceptions SET resolved_at = now(), resolution = $2
		WHERE id = $1 AND resolved_at IS NULL`, id, resolution)
	if err != nil {
		return fmt.Errorf("resolving exception %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrUnknownException
	}
	return nil
}
