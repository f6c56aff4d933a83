package ledger

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// CardBatches cuts the cards, in order of id, into consecutive ranges of
// size cards: it returns the last id of every full range. The ranges are
// (0, b[0]], (b[0], b[1]], ... and, open-ended, (b[len-1], ∞): daily work
// over every card runs one range at a time, each range its own task.
func (l *Ledger) CardBatches(ctx context.Context, size int) ([]int64, error) {
	if size < 1 {
		return nil, fmt.Errorf("ledger: batch size %d", size)
	}
	rows, err := l.pool.Query(ctx, `SELECT id FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM cards) c
		WHERE n % $1 = 0 ORDER BY id`, size)
	if err != nil {
		return nil, fmt.Errorf("cutting the cards into batches: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}
