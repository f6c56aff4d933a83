package ledger

import (
	"bytes"
	"context"
	"errors"
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
// next carries on. At the end of a pass it looks for rows still under
// another key (written meanwhile by a switch that had not moved to the
// new one) and goes back for them; Done means there are none. Once every
// row is sealed, the schema refuses a PAN or a response in the clear.
func (l *Ledger) Reseal(ctx context.Context, batch int) (Resealing, error) {
	if err := l.learnNewerKey(ctx); err != nil {
		return Resealing{}, err
	}
	r := Resealing{Key: l.keys.activeKey()}
	var at *time.Time
	err := l.pool.QueryRow(ctx, `SELECT resealed_cards, resealed_requests, resealed_at FROM data_keys WHERE id = $1`, r.Key).
		Scan(&r.Cards, &r.Requests, &at)
	if err != nil {
		return r, fmt.Errorf("reading data key %d: %w", r.Key, err)
	}
	if at == nil {
		var more bool
		err = pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('lock_timeout', $1, true)`, resealLockTimeout); err != nil {
				return err
			}
			var err error
			if r.Cards >= 0 {
				r.Cards, more, r.Changed, err = l.resealCards(ctx, tx, r.Key, r.Cards, batch)
			} else {
				r.Requests, more, r.Changed, err = l.resealRequests(ctx, tx, r.Key, r.Requests, batch)
			}
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `UPDATE data_keys SET resealed_cards = $2, resealed_requests = $3 WHERE id = $1`, r.Key, r.Cards, r.Requests)
			return err
		})
		if err == nil && !more {
			// The end of a pass, outside its transaction: a scan of the
			// table holds no row's lock.
			err = l.endOfPass(ctx, &r)
		}
		if code, _ := pgCode(err); code == codeLockNotAvailable {
			return r, fmt.Errorf("%w: sealing rows again under data key %d: %w", ErrBusy, r.Key, err)
		}
		if err != nil {
			return r, fmt.Errorf("sealing rows again under data key %d: %w", r.Key, err)
		}
		if !r.Done {
			return r, nil
		}
	}
	// Every row sealed under the key: the schema refuses clear card data
	// from now on (still to do if a try to say so gave way before).
	if err := l.refuseClear(ctx, true); err != nil {
		return r, err
	}
	l.plainCards.Store(false)
	r.Done = true
	return r, nil
}

// endOfPass looks, at the end of a pass over cards or requests, for rows
// still under another key, written meanwhile by a switch that had not
// moved to this one, and goes back for them: the pass over cards is
// followed by one over requests, and that by the check of cards again.
func (l *Ledger) endOfPass(ctx context.Context, r *Resealing) error {
	cards := `SELECT min(id) FROM cards WHERE pan_key IS DISTINCT FROM $1`
	var err error
	if r.Cards >= 0 {
		r.Cards, err = straggler(ctx, l.pool, cards, r.Key)
	} else {
		var back int64
		if back, err = straggler(ctx, l.pool, `SELECT min(id) FROM requests WHERE sealed_by IS DISTINCT FROM $1`, r.Key); err == nil && back >= 0 {
			r.Requests = back
		} else if err == nil {
			back, err = straggler(ctx, l.pool, cards, r.Key)
			r.Cards, r.Done = back, err == nil && back < 0
		}
	}
	if err != nil {
		return err
	}
	_, err = l.pool.Exec(ctx, `UPDATE data_keys SET resealed_cards = $2, resealed_requests = $3, resealed_at = CASE WHEN $4 THEN now() END
		WHERE id = $1`, r.Key, r.Cards, r.Requests, r.Done)
	return err
}

// straggler is where a pass over a table must go back to: before the
// first row query finds (by its id, given $1 the key), or -1 for none.
func straggler(ctx context.Context, q querier, query string, key int32) (int64, error) {
	var id *int64
	if err := q.QueryRow(ctx, query, key).Scan(&id); err != nil {
		return 0, err
	}
	if id == nil {
		return -1, nil
	}
	return *id - 1, nil
}

// Sealed reports whether every row is sealed under the data key in use
// and the schema refuses clear card data (whether or not PostgreSQL has
// checked the rows against it yet): nothing is left for Reseal.
func (l *Ledger) Sealed(ctx context.Context) (bool, error) {
	if err := l.learnNewerKey(ctx); err != nil {
		return false, err
	}
	var done bool
	err := l.pool.QueryRow(ctx, `SELECT (SELECT resealed_at IS NOT NULL FROM data_keys WHERE id = $1)
		AND (SELECT count(*) = 2 FROM pg_constraint WHERE conname IN ('cards_pan_sealed_only', 'requests_sealed_only'))`,
		l.keys.activeKey()).Scan(&done)
	if err != nil {
		return false, fmt.Errorf("reading data keys: %w", err)
	}
	return done, nil
}

// learnNewerKey moves to a data key another switch made, if there is one:
// rows are never sealed again under an older key than the newest.
func (l *Ledger) learnNewerKey(ctx context.Context) error {
	var newest int32
	if err := l.pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM data_keys WHERE purpose = 'data'`).Scan(&newest); err != nil {
		return fmt.Errorf("reading data keys: %w", err)
	}
	return l.UseDataKey(ctx, newest)
}

// checkClear learns whether cards stored before PANs were sealed remain
// (RecheckClear), and when no row is left in the clear (a new database,
// or one sealed in place), makes the schema refuse any from then on.
func (l *Ledger) checkClear(ctx context.Context) error {
	var refused bool
	err := l.pool.QueryRow(ctx, `SELECT count(*) = 2 FROM pg_constraint
		WHERE conname IN ('cards_pan_sealed_only', 'requests_sealed_only')`).Scan(&refused)
	if err != nil || refused {
		return err
	}
	plain, err := l.RecheckClear(ctx)
	if err != nil || plain {
		return err
	}
	var requests bool
	if err := l.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM requests WHERE sealed_by IS NULL)`).Scan(&requests); err != nil {
		return fmt.Errorf("reading requests: %w", err)
	}
	if requests {
		return nil
	}
	// The tables' rows are checked by the reseal job, in the background;
	// one that gives way here is left to it.
	if err := l.refuseClear(ctx, false); err != nil && !errors.Is(err, ErrBusy) {
		return err
	}
	return nil
}

// RecheckClear reports whether cards stored before PANs were sealed remain;
// once none do, looking a card up no longer sends its plain PAN to the
// database. A switch that did not seal them asks from time to time.
func (l *Ledger) RecheckClear(ctx context.Context) (bool, error) {
	var plain bool
	if err := l.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM cards WHERE pan_clear IS NOT NULL)`).Scan(&plain); err != nil {
		return false, fmt.Errorf("reading cards: %w", err)
	}
	l.plainCards.Store(plain)
	return plain, nil
}

// refuseClear adds the constraints that refuse a card with a PAN in the
// clear and a request without a sealed response, once there are none:
// from then on, nothing written by any build can store either. Adding one
// takes its table's lock for an instant: it is not tried while a
// transaction that has been open a while holds the table (a dump, a
// report, a vacuum), and gives up after 10 ms (ErrBusy), so that requests
// wait at most that long behind it. With validate it then has PostgreSQL
// check the existing rows too (they were checked by the pass that sealed
// them), for at most validateFor, without blocking writes: a check that
// does not finish leaves the constraint in force for what is written.
func (l *Ledger) refuseClear(ctx context.Context, validate bool) error {
	for _, c := range []struct{ table, name, check string }{
		{"cards", "cards_pan_sealed_only", "pan_clear IS NULL"},
		{"requests", "requests_sealed_only", "sealed_by IS NOT NULL"},
	} {
		var have, valid, held bool
		err := l.pool.QueryRow(ctx, `SELECT count(*) > 0, coalesce(bool_and(convalidated), false),
				EXISTS (SELECT 1 FROM pg_locks k JOIN pg_stat_activity a ON a.pid = k.pid
					WHERE k.relation = $2::regclass AND k.granted AND k.pid <> pg_backend_pid()
					  AND a.xact_start < now() - interval '1 second')
			FROM pg_constraint WHERE conname = $1`, c.name, c.table).Scan(&have, &valid, &held)
		if err != nil {
			return fmt.Errorf("reading constraints: %w", err)
		}
		if valid || (have && !validate) {
			continue
		}
		if !have {
			if held {
				return fmt.Errorf("%w: refusing clear card data in %s: a long transaction holds the table", ErrBusy, c.table)
			}
			err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '10ms'`); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `ALTER TABLE `+c.table+` ADD CONSTRAINT `+c.name+` CHECK (`+c.check+`) NOT VALID`)
				return err
			})
			switch code, _ := pgCode(err); {
			case code == codeDuplicateObject: // another switch added it meanwhile
			case code == codeLockNotAvailable:
				return fmt.Errorf("%w: refusing clear card data in %s: %w", ErrBusy, c.table, err)
			case err != nil:
				return fmt.Errorf("refusing clear card data in %s: %w", c.table, err)
			}
		}
		if validate {
			vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), validateFor)
			_, err := l.pool.Exec(vctx, `ALTER TABLE `+c.table+` VALIDATE CONSTRAINT `+c.name)
			cancel()
			switch code, _ := pgCode(err); {
			case code == codeCheckViolation:
				// A row in the clear after all (written since the pass
				// looked, by hand or an old build): the pass runs again.
				if _, err := l.pool.Exec(ctx, `UPDATE data_keys SET resealed_at = NULL, resealed_cards = 0, resealed_requests = 0
					WHERE id = $1`, l.keys.activeKey()); err != nil {
					return err
				}
				return fmt.Errorf("%w: a row in the clear in %s: sealing again", ErrBusy, c.table)
			case err != nil && vctx.Err() == nil && ctx.Err() == nil:
				return fmt.Errorf("checking %s's rows: %w", c.table, err)
			}
		}
	}
	return nil
}

// validateFor bounds PostgreSQL's check of a table's rows against a new
// constraint; one that does not finish is left to the next start.
const validateFor = 10 * time.Minute

// resealCards seals again the cards after id after that are not sealed
// under key, up to batch of them, and returns the last id read and whether
// there may be more.
func (l *Ledger) resealCards(ctx context.Context, tx pgx.Tx, key int32, after int64, batch int) (int64, bool, int, error) {
	rows, err := tx.Query(ctx, `SELECT id, pan_clear, pan_sealed, pan_key, pan_hash FROM cards WHERE id > $1 ORDER BY id LIMIT $2`, after, batch)
	if err != nil {
		return 0, false, 0, err
	}
	type card struct {
		id           int64
		pan          *string
		sealed, hash []byte
		key          *int32
	}
	cards, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (card, error) {
		var c card
		return c, row.Scan(&c.id, &c.pan, &c.sealed, &c.key, &c.hash)
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
		if c.key != nil && *c.key >= key {
			continue // under this key, or a newer one another switch made meanwhile
		}
		var pan string
		if c.pan != nil {
			pan = *c.pan
		} else {
			plain, err := l.keys.open(ctx, tx, *c.key, c.sealed, aadPAN(c.hash))
			if err != nil {
				return 0, false, 0, fmt.Errorf("card %d: %w", c.id, err)
			}
			pan = string(plain)
		}
		p := l.keys.sealPAN(pan)
		if c.hash != nil && !bytes.Equal(c.hash, p.hash) {
			return 0, false, 0, fmt.Errorf("ledger: card %d's sealed PAN is not the one its hash finds", c.id)
		}
		if p.key != key {
			return 0, false, 0, fmt.Errorf("ledger: data key in use moved from %d to %d", key, p.key)
		}
		ids, oldKeys = append(ids, c.id), append(oldKeys, c.key)
		hashes, sealed, masked = append(hashes, p.hash), append(sealed, p.sealed), append(masked, p.masked)
	}
	n := 0
	if len(ids) > 0 {
		tag, err := tx.Exec(ctx, `UPDATE cards c SET pan_clear = NULL, pan_hash = k.hash, pan_sealed = k.sealed, pan_key = $6, pan_masked = k.masked
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
	rows, err := tx.Query(ctx, `SELECT id, response, fingerprint, sealed_by, txn_key FROM requests WHERE id > $1 ORDER BY id LIMIT $2`, after, batch)
	if err != nil {
		return 0, false, 0, err
	}
	type request struct {
		id                            int64
		response, fingerprint, txnKey []byte
		key                           *int32
	}
	reqs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (request, error) {
		var r request
		return r, row.Scan(&r.id, &r.response, &r.fingerprint, &r.key, &r.txnKey)
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
		if r.key != nil && *r.key >= key {
			continue // under this key, or a newer one another switch made meanwhile
		}
		plain, err := l.openResponse(ctx, tx, r.txnKey, r.key, r.response)
		if err != nil {
			return 0, false, 0, fmt.Errorf("request %d: %w", r.id, err)
		}
		var resp []byte
		if plain != nil {
			var k int32
			if resp, k = l.keys.seal(plain, aadResponse(r.txnKey)); k != key {
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
	rows, err := l.pool.Query(ctx, `SELECT id, pan_sealed, pan_key, pan_hash FROM cards WHERE pan_sealed IS NOT NULL ORDER BY id`)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id           int64
			sealed, hash []byte
			key          int32
		)
		if err := rows.Scan(&id, &sealed, &key, &hash); err != nil {
			return cards, requests, err
		}
		if under && key != active {
			return cards, requests, fmt.Errorf("card %d is sealed under data key %d, not %d", id, key, active)
		}
		pan, err := l.keys.open(ctx, l.pool, key, sealed, aadPAN(hash))
		if err != nil {
			return cards, requests, fmt.Errorf("card %d: %w", id, err)
		}
		if !bytes.Equal(l.keys.panHash(string(pan)), hash) {
			return cards, requests, fmt.Errorf("card %d's sealed PAN is not the one its hash finds", id)
		}
		cards++
	}
	if err := rows.Err(); err != nil {
		return cards, requests, err
	}
	rows, err = l.pool.Query(ctx, `SELECT id, response, sealed_by, txn_key FROM requests WHERE response IS NOT NULL ORDER BY id`)
	if err != nil {
		return cards, requests, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id               int64
			response, txnKey []byte
			key              *int32
		)
		if err := rows.Scan(&id, &response, &key, &txnKey); err != nil {
			return cards, requests, err
		}
		if under && (key == nil || *key != active) {
			return cards, requests, fmt.Errorf("request %d is not sealed under data key %d", id, active)
		}
		if _, err := l.openResponse(ctx, l.pool, txnKey, key, response); err != nil {
			return cards, requests, fmt.Errorf("request %d: %w", id, err)
		}
		requests++
	}
	return cards, requests, rows.Err()
}
