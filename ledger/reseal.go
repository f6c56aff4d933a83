package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// resealLockTimeout is the longest a reseal batch waits for a row that a
// request's transaction holds: past that it gives way, and runs again.
const resealLockTimeout = "200ms"

// Resealing is how far Reseal has come for the active data key.
type Resealing struct {
	Key int32 `json:"key"`
	// Cards and Requests are the ids up to which rows are sealed under
	// Key; Done reports that every row is.
	Cards    int64 `json:"cards"`
	Requests int64 `json:"requests"`
	Done     bool  `json:"done"`
	// Changed is how many rows the call sealed again.
	Changed int `json:"changed"`
}

// Reseal seals again, under the data key in use, the next batch of rows
// (cards, then requests, by id) that are sealed under an earlier key, or
// not sealed at all (stored before sealing); the rows of a batch are
// changed in one transaction, each only if it has not changed since it
// was read. It keeps its progress in the database, so whoever runs it
// next carries on. Done means no row is left.
func (l *Ledger) Reseal(ctx context.Context, batch int) (Resealing, error) {
	r := Resealing{Key: l.keys.activeKey()}
	var at *time.Time
	err := l.pool.QueryRow(ctx, `SELECT resealed_cards, resealed_requests, resealed_at FROM data_keys WHERE id = $1`, r.Key).
		Scan(&r.Cards, &r.Requests, &at)
	if err != nil {
		return r, fmt.Errorf("reading data key %d: %w", r.Key, err)
	}
	if at != nil {
		r.Done = true
		return r, nil
	}
	err = pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, resealLockTimeout); err != nil {
			return err
		}
		var (
			upto int64
			more bool
			err  error
		)
		column := "resealed_cards"
		if r.Cards >= 0 {
			upto, more, r.Changed, err = l.resealCards(ctx, tx, r.Key, r.Cards, batch)
			if err == nil && !more {
				upto = -1 // every card: requests next
			}
		} else {
			column = "resealed_requests"
			upto, more, r.Changed, err = l.resealRequests(ctx, tx, r.Key, r.Requests, batch)
			r.Done = err == nil && !more
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE data_keys SET `+column+` = $2, resealed_at = CASE WHEN $3 THEN now() END WHERE id = $1`,
			r.Key, upto, r.Done)
		if column == "resealed_cards" {
			r.Cards = upto
		} else {
			r.Requests = upto
		}
		return err
	})
	if err != nil {
		return r, fmt.Errorf("sealing rows again under data key %d: %w", r.Key, err)
	}
	if r.Done {
		var plain bool
		if err := l.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM cards WHERE pan IS NOT NULL)`).Scan(&plain); err != nil {
			return r, fmt.Errorf("reading cards: %w", err)
		}
		l.plainCards.Store(plain)
	}
	return r, nil
}

// resealCards seals again the cards after id after that are not sealed
// under key, up to batch of them, and returns the last id read and whether
// there may be more.
func (l *Ledger) resealCards(ctx context.Context, tx pgx.Tx, key int32, after int64, batch int) (int64, bool, int, error) {
	rows, err := tx.Query(ctx, `SELECT id, pan, pan_sealed, pan_key FROM cards WHERE id > $1 ORDER BY id LIMIT $2`, after, batch)
	if err != nil {
		return 0, false, 0, err
	}
	type card struct {
		id     int64
		pan    *string
		sealed []byte
		key    *int32
	}
	cards, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (card, error) {
		var c card
		return c, row.Scan(&c.id, &c.pan, &c.sealed, &c.key)
	})
	if err != nil {
		return 0, false, 0, err
	}
	var (
		ids            []int64
		oldKeys        []*int32
		hashes, sealed [][]byte
		masked         []string
	)
	last := after
	for _, c := range cards {
		last = c.id
		if c.key != nil && *c.key == key {
			continue
		}
		var pan string
		if c.pan != nil {
			pan = *c.pan
		} else {
			plain, err := l.keys.open(ctx, tx, *c.key, c.sealed, aadPAN)
			if err != nil {
				return 0, false, 0, fmt.Errorf("card %d: %w", c.id, err)
			}
			pan = string(plain)
		}
		p := l.keys.sealPAN(pan)
		if p.key != key {
			return 0, false, 0, fmt.Errorf("ledger: data key in use moved from %d to %d", key, p.key)
		}
		ids, oldKeys = append(ids, c.id), append(oldKeys, c.key)
		hashes, sealed, masked = append(hashes, p.hash), append(sealed, p.sealed), append(masked, p.masked)
	}
	n := 0
	if len(ids) > 0 {
		tag, err := tx.Exec(ctx, `UPDATE cards c SET pan = NULL, pan_hash = k.hash, pan_sealed = k.sealed, pan_key = $6, pan_masked = k.masked
			FROM unnest($1::bigint[], $2::int[], $3::bytea[], $4::bytea[], $5::text[]) k(id, old_key, hash, sealed, masked)
			WHERE c.id = k.id AND c.pan_key IS NOT DISTINCT FROM k.old_key`, ids, oldKeys, hashes, sealed, masked, key)
		if err != nil {
			return 0, false, 0, err
		}
		n = int(tag.RowsAffected())
	}
	return last, len(cards) == batch, n, nil
}

// resealRequests is resealCards for requests' stored responses; a request
// stored before sealing also has its fingerprint keyed.
func (l *Ledger) resealRequests(ctx context.Context, tx pgx.Tx, key int32, after int64, batch int) (int64, bool, int, error) {
	rows, err := tx.Query(ctx, `SELECT id, response, fingerprint, sealed_by FROM requests WHERE id > $1 ORDER BY id LIMIT $2`, after, batch)
	if err != nil {
		return 0, false, 0, err
	}
	type request struct {
		id                    int64
		response, fingerprint []byte
		key                   *int32
	}
	reqs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (request, error) {
		var r request
		return r, row.Scan(&r.id, &r.response, &r.fingerprint, &r.key)
	})
	if err != nil {
		return 0, false, 0, err
	}
	var (
		ids                          []int64
		oldKeys                      []*int32
		oldResponses, responses, fps [][]byte
	)
	last := after
	for _, r := range reqs {
		last = r.id
		if r.key != nil && *r.key == key {
			continue
		}
		plain, err := l.openResponse(ctx, tx, r.key, r.response)
		if err != nil {
			return 0, false, 0, fmt.Errorf("request %d: %w", r.id, err)
		}
		var resp []byte
		if plain != nil {
			var k int32
			if resp, k = l.keys.seal(plain, aadResponse); k != key {
				return 0, false, 0, fmt.Errorf("ledger: data key in use moved from %d to %d", key, k)
			}
		}
		fp := r.fingerprint
		if r.key == nil {
			fp = l.Fingerprint(fp)
		}
		ids, oldKeys, oldResponses = append(ids, r.id), append(oldKeys, r.key), append(oldResponses, r.response)
		responses, fps = append(responses, resp), append(fps, fp)
	}
	n := 0
	if len(ids) > 0 {
		tag, err := tx.Exec(ctx, `UPDATE requests r SET response = k.response, fingerprint = k.fingerprint, sealed_by = $6
			FROM unnest($1::bigint[], $2::int[], $3::bytea[], $4::bytea[], $5::bytea[]) k(id, old_key, old_response, response, fingerprint)
			WHERE r.id = k.id AND r.sealed_by IS NOT DISTINCT FROM k.old_key AND r.response IS NOT DISTINCT FROM k.old_response`,
			ids, oldKeys, oldResponses, responses, fps, key)
		if err != nil {
			return 0, false, 0, err
		}
		n = int(tag.RowsAffected())
	}
	return last, len(reqs) == batch, n, nil
}

// CheckSealed opens every sealed PAN and stored response, and reports how
// many of each it opened: an error names the first row that does not
// open, or that is sealed under a key other than the one in use when
// under is set.
func (l *Ledger) CheckSealed(ctx context.Context, under bool) (cards, requests int, err error) {
	active := l.keys.activeKey()
	rows, err := l.pool.Query(ctx, `SELECT id, pan_sealed, pan_key FROM cards WHERE pan_sealed IS NOT NULL ORDER BY id`)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id     int64
			sealed []byte
			key    int32
		)
		if err := rows.Scan(&id, &sealed, &key); err != nil {
			return cards, requests, err
		}
		if under && key != active {
			return cards, requests, fmt.Errorf("card %d is sealed under data key %d, not %d", id, key, active)
		}
		if _, err := l.keys.open(ctx, l.pool, key, sealed, aadPAN); err != nil {
			return cards, requests, fmt.Errorf("card %d: %w", id, err)
		}
		cards++
	}
	if err := rows.Err(); err != nil {
		return cards, requests, err
	}
	rows, err = l.pool.Query(ctx, `SELECT id, response, sealed_by FROM requests WHERE response IS NOT NULL ORDER BY id`)
	if err != nil {
		return cards, requests, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id       int64
			response []byte
			key      *int32
		)
		if err := rows.Scan(&id, &response, &key); err != nil {
			return cards, requests, err
		}
		if under && (key == nil || *key != active) {
			return cards, requests, fmt.Errorf("request %d is not sealed under data key %d", id, active)
		}
		if _, err := l.openResponse(ctx, l.pool, key, response); err != nil {
			return cards, requests, fmt.Errorf("request %d: %w", id, err)
		}
		requests++
	}
	return cards, requests, rows.Err()
}
