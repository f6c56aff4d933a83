package timer

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// View is a task as the admin API shows it.
type View struct {
	Kind      string          `json:"kind"`
	Key       string          `json:"key"`
	Due       time.Time       `json:"due_at"`
	State     string          `json:"state"`
	Attempts  int             `json:"attempts"`
	LastError string          `json:"last_error,omitempty"`
	FiredAt   *time.Time      `json:"fired_at,omitempty"`
	DoneAt    *time.Time      `json:"done_at,omitempty"`
	Payload   json.RawMessage `json:"payload"`
}

// States a task can be in.
var States = []string{"pending", "done", "dead", "cancelled"}

// List returns up to limit tasks of a kind and state (empty: any), the
// earliest due first.
func List(ctx context.Context, pool *pgxpool.Pool, kind, state string, limit int) ([]View, error) {
	rows, err := pool.Query(ctx, `SELECT kind, key, due_at, state, attempts, coalesce(last_error, ''), fired_at, done_at, payload
		FROM timer_tasks WHERE ($1 = '' OR kind = $1) AND ($2 = '' OR state = $2)
		ORDER BY due_at LIMIT $3`, kind, state, limit)
	if err != nil {
		return nil, fmt.Errorf("listing tasks: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (View, error) {
		var v View
		err := r.Scan(&v.Kind, &v.Key, &v.Due, &v.State, &v.Attempts, &v.LastError, &v.FiredAt, &v.DoneAt, &v.Payload)
		return v, err
	})
}

// Unfinished counts the tasks of kind whose key starts with prefix that
// have not finished: pending, or dead (an operator's to settle).
func (t *Timer) Unfinished(ctx context.Context, kind, prefix string) (int, error) {
	var n int
	err := t.o.Pool.QueryRow(ctx, `SELECT count(*) FROM timer_tasks
		WHERE state IN ('pending', 'dead') AND kind = $1 AND starts_with(key, $2)`, kind, prefix).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting unfinished %s tasks: %w", kind, err)
	}
	return n, nil
}
