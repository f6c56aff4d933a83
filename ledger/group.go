package ledger

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotGroupable is a group look-up the ledger cannot make set-based
// right now (requests keyed as before banks named their keys may still
// see repeats): each request is looked up on its own instead.
var ErrNotGroupable = errors.New("ledger: requests must be looked up one by one")

// groupLockTimeout is the longest a group waits for one of its locks.
const groupLockTimeout = "200ms"

// LookupGroup is LookupRequest for many new requests at once, in one round
// trip of set-based statements: it takes each request's transaction turn
// and each card's row locks (both in a fixed order, so that two groups, or
// a group and a single request, never wait for each other in a circle),
// and finds what is stored under each key and any reversal waiting for
// each. The lookups are in fs's order; requests naming one card share its
// *Card, so that deciding them in order sees each one's effect on the
// next.
func (tx *Tx) LookupGroup(ctx context.Context, fs []Find) ([]*Lookup, error) {
	if tx.l.legacyOpen(ctx, tx.tx) {
		return nil, ErrNotGroupable
	}
	n := len(fs)
	var (
		serials = make([]string, n)
		digests = make([][]byte, n)
		pans    []string
		hashes  [][]byte
		days    []time.Time
		firstOf = make(map[string]int, n) // PAN → index into pans
		// The waiting-reversal probe's columns, of requests that ask for it.
		wi                                                      []int32
		wBank, wAcq, wStan, wTrans, wTerm, wClass, wRRN, wLocal []string
		wAmount                                                 []int64
		wNamesTrans                                             []bool
	)
	for i, f := range fs {
		serials[i], digests[i] = f.Serial, f.Key.Digest()
		if f.PAN != "" {
			if _, ok := firstOf[f.PAN]; !ok {
				firstOf[f.PAN] = len(pans)
				pans, days = append(pans, f.PAN), append(days, f.Day)
				hashes = append(hashes, tx.l.keys.panHash(f.PAN))
			}
		}
		if f.CheckReversed {
			k := f.Key
			wi = append(wi, int32(i+1))
			wBank, wAcq, wStan, wTrans = append(wBank, k.Bank), append(wAcq, k.Acquirer), append(wStan, k.STAN), append(wTrans, k.Transmitted)
			wTerm, wClass, wRRN, wLocal = append(wTerm, k.Terminal), append(wClass, k.Class), append(wRRN, k.RRN), append(wLocal, k.LocalDate)
			wAmount, wNamesTrans = append(wAmount, f.Amount), append(wNamesTrans, k.Names(FieldTransmitted))
		}
	}
	b := &pgx.Batch{}
	// A group waits only briefly for a lock another transaction holds:
	// past that it fails (lock_not_available), and its members are each
	// decided on their own, so that one busy card holds up only itself.
	b.Queue(`SELECT set_config('lock_timeout', $1, true)`, groupLockTimeout)
	b.Queue(`SELECT count(pg_advisory_xact_lock(h)) FROM (
			SELECT DISTINCT hashtextextended(s, 0) AS h FROM unnest($1::text[]) s ORDER BY 1) x`, serials)
	b.Queue(`SELECT k.i, r.id, r.fingerprint, r.sealed_by, r.txn_key, r.state, coalesce(r.response_code, ''), r.response, coalesce(r.claim, 0),
			coalesce(r.state = 'deciding' AND r.respond_by <= clock_timestamp(), false),
			coalesce((SELECT min(x.id) FROM (SELECT v.id FROM requests v WHERE v.reverses = r.id OFFSET 0) x), 0)
		FROM unnest($1::bytea[]) WITH ORDINALITY k(key, i)
		-- OFFSET 0 keeps a look-up by index per key: a plan cached while the
		-- table was small would otherwise scan it whole.
		CROSS JOIN LATERAL (SELECT * FROM requests r WHERE r.txn_key = k.key OFFSET 0) r`, digests)
	if len(wi) > 0 {
		// As LookupRequest's probe, once per request that asks.
		b.Queue(`SELECT k.i, w.id, w.stated
			FROM unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
				$9::bigint[], $10::text[], $11::bool[])
				AS k(i, bank, acquirer, stan, transmitted, terminal, class, rrn, amount, local_date, names_transmitted)
			CROSS JOIN LATERAL (
				SELECT id, coalesce(stated, 0) AS stated FROM requests
				WHERE waiting AND orig_stan = k.stan AND orig_acquirer = k.acquirer AND bank = k.bank
				  AND terminal = k.terminal AND orig_class = k.class
				  AND (orig_transmitted = k.transmitted OR (NOT k.names_transmitted
				       AND (local_date = k.local_date OR local_date = '' OR k.local_date = '')))
				  AND amount = k.amount AND created_at > now() - interval '1 day'
				UNION ALL
				SELECT id, coalesce(stated, 0) FROM requests
				WHERE waiting AND rrn = k.rrn AND terminal = k.terminal AND acquirer = k.acquirer AND bank = k.bank
				  AND stan = k.stan AND k.rrn <> '' AND amount = k.amount AND created_at > now() - interval '1 day'
				  AND (local_date = k.local_date OR local_date = '' OR k.local_date = '')
				ORDER BY id LIMIT 1) w`,
			wi, wBank, wAcq, wStan, wTrans, wTerm, wClass, wRRN, wAmount, wLocal, wNamesTrans)
	}
	if len(pans) > 0 {
		where, args := `c.pan_hash = k.hash`, []any{hashes, days}
		if tx.l.plainCards.Load() {
			// Cards stored before PANs were sealed, not sealed yet.
			where, args = `c.pan_hash = k.hash OR c.pan_clear = k.pan`, append(args, pans)
		} else {
			args = append(args, []string(nil)) // unnest pads it with NULLs
		}
		b.Queue(`SELECT c.id, c.ref, `+maskedColumn+`, c.currency, c.status, c.fence,
				coalesce((SELECT q.used FROM redemption_quota q WHERE q.card_id = c.id AND q.day = k.day), 0),
				a.id, a.kind, a.balance, a.held, k.i
			FROM unnest($1::bytea[], $2::date[], $3::text[]) WITH ORDINALITY k(hash, day, pan, i)
			-- OFFSET 0: a look-up by index per card, whatever the planner
			-- guessed of the table when it cached the plan.
			CROSS JOIN LATERAL (SELECT * FROM cards c WHERE `+where+` OFFSET 0) c
			JOIN accounts a ON a.card_id = c.id
			ORDER BY a.id FOR UPDATE OF a`, args...)
	}
	br := tx.tx.SendBatch(ctx, b)
	defer br.Close()

	out := make([]*Lookup, n)
	for i := range out {
		out[i] = &Lookup{}
	}
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("setting the group's lock timeout: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("waiting for the transactions' other requests: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("looking up requests: %w", err)
	}
	type sealing struct {
		by     *int32
		txnKey []byte
	}
	sealed := map[int64]sealing{}
	for rows.Next() {
		var (
			i int64
			p Prior
			k sealing
		)
		if err := rows.Scan(&i, &p.ID, &p.Fingerprint, &k.by, &k.txnKey, &p.State, &p.ResponseCode, &p.Response, &p.Claim, &p.Expired, &p.ReversedBy); err != nil {
			rows.Close()
			return nil, fmt.Errorf("looking up requests: %w", err)
		}
		out[i-1].Prior, sealed[i-1] = &p, k
	}
	if rows.Close(); rows.Err() != nil {
		return nil, fmt.Errorf("looking up requests: %w", rows.Err())
	}
	if len(wi) > 0 {
		rows, err := br.Query()
		if err != nil {
			return nil, fmt.Errorf("looking up early reversals: %w", err)
		}
		for rows.Next() {
			var (
				i       int32
				id, amt int64
			)
			if err := rows.Scan(&i, &id, &amt); err != nil {
				rows.Close()
				return nil, fmt.Errorf("looking up early reversals: %w", err)
			}
			out[i-1].Waiting, out[i-1].WaitingStated = id, amt
		}
		if rows.Close(); rows.Err() != nil {
			return nil, fmt.Errorf("looking up early reversals: %w", rows.Err())
		}
	}
	cards := make([]*Card, len(pans))
	if len(pans) > 0 {
		rows, err := br.Query()
		if err != nil {
			return nil, fmt.Errorf("locking cards: %w", err)
		}
		_, byIndex, err := scanCards(rows, true)
		if err != nil {
			return nil, err
		}
		for j := range pans {
			if c := byIndex[int64(j+1)]; c != nil {
				c.day = days[j]
				if err := tx.l.resolveSystem(ctx, tx.tx, c); err != nil {
					return nil, err
				}
				cards[j] = c
			}
		}
	}
	if err := br.Close(); err != nil {
		return nil, err
	}
	for i, k := range sealed {
		if err := tx.l.unseal(ctx, tx.tx, out[i].Prior, k.txnKey, k.by); err != nil {
			return nil, err
		}
	}
	for i, f := range fs {
		if f.PAN != "" {
			out[i].Card = cards[firstOf[f.PAN]]
		}
	}
	return out, nil
}

// scanCards reads the rows of cardQuery's columns for several cards, in
// any order, into cards by id and, when the rows end with the index of
// what named each card, by that index.
func scanCards(rows pgx.Rows, indexed bool) (byID, byIndex map[int64]*Card, err error) {
	defer rows.Close()
	byID = make(map[int64]*Card)
	if indexed {
		byIndex = make(map[int64]*Card)
	}
	for rows.Next() {
		var (
			r             Card
			id, index     int64
			kind          string
			balance, held int64
		)
		dest := []any{&r.ID, &r.Ref, &r.Masked, &r.Currency, &r.Status, &r.Fence, &r.RedeemedToday, &id, &kind, &balance, &held}
		if indexed {
			dest = append(dest, &index)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, fmt.Errorf("reading cards: %w", err)
		}
		c := byID[r.ID]
		if c == nil {
			c = &r
			byID[r.ID] = c
		}
		if indexed {
			byIndex[index] = c
		}
		switch kind {
		case "cash":
			c.cashID, c.Cash, c.Held = id, balance, held
		case "fund":
			c.fundID, c.Fund = id, balance
		case "overdraft":
			c.overdraftID, c.Overdraft = id, balance
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("reading cards: %w", err)
	}
	for _, c := range byID {
		if c.cashID == 0 || c.fundID == 0 || c.overdraftID == 0 {
			return nil, nil, errors.New("ledger: card is missing one of its accounts")
		}
	}
	return byID, byIndex, nil
}

// SaveGroup is Save for many requests new to the ledger, decided
// together: their records, their transfers and their holds are each
// written by one multi-row statement, in one round trip, and it returns
// the records' ids in recs' order. Records that take the place of a stored
// request, and reversals, are saved one by one (Save). Effects other than
// transfers and new holds are written one statement each.
func (tx *Tx) SaveGroup(ctx context.Context, recs []Record, effects [][]Effect) ([]int64, error) {
	n := len(recs)
	if len(effects) != n {
		return nil, errors.New("ledger: a group's records and effects differ in number")
	}
	var (
		keys                                                = make([][]byte, n)
		bank, acq, stan, trans, term, class, mti, rrn, txnT = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		code, localDate, localTime, currency                = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		auth                                                = make([]*string, n)
		card                                                = make([]*int64, n)
		amount                                              = make([]int64, n)
		bizDate                                             = make([]*time.Time, n)
		fingerprint, response                               = make([][]byte, n), make([][]byte, n)
		sealedBy                                            = make([]int32, n)
		tKey                                                [][]byte
		tKind, tCurrency                                    []string
		tDebit, tCredit, tAmount                            []int64
		hKey                                                [][]byte
		hAccount, hAmount                                   []int64
		hExpires                                            []time.Time
		others                                              []Effect
	)
	b := &pgx.Batch{}
	for i, r := range recs {
		if r.Over != nil || r.Reverses != 0 || r.Waiting || r.Orig != nil || r.Stated != nil || r.Stands != nil {
			return nil, fmt.Errorf("ledger: request %d of a group is not new, or is a reversal: save it on its own", i)
		}
		k := r.Key
		keys[i] = k.Digest()
		bank[i], acq[i], stan[i], trans[i], term[i], class[i] = k.Bank, k.Acquirer, k.STAN, k.Transmitted, k.Terminal, k.Class
		mti[i], rrn[i], txnT[i], code[i] = r.MTI, k.RRN, r.TxnType, r.ResponseCode
		localDate[i], localTime[i], currency[i] = k.LocalDate, k.LocalTime, r.Currency
		amount[i], fingerprint[i] = r.Amount, r.Fingerprint
		response[i], sealedBy[i] = tx.l.sealResponse(keys[i], r.Response)
		if !r.BusinessDate.IsZero() {
			bizDate[i] = &recs[i].BusinessDate
		}
		if r.AuthCode != "" {
			auth[i] = &recs[i].AuthCode
		}
		if r.CardID != 0 {
			card[i] = &recs[i].CardID
		}
		for _, e := range effects[i] {
			switch e := e.(type) {
			case transfer:
				tKey, tKind, tCurrency = append(tKey, keys[i]), append(tKind, e.kind), append(tCurrency, e.currency)
				tDebit, tCredit, tAmount = append(tDebit, e.debit), append(tCredit, e.credit), append(tAmount, e.amount)
			case placeHold:
				hKey, hAccount, hAmount, hExpires = append(hKey, keys[i]), append(hAccount, e.account), append(hAmount, e.amount), append(hExpires, e.expires)
			default:
				others = append(others, e)
			}
		}
	}
	// One statement: the records, and the postings that name them by the
	// ids they were given.
	b.Queue(`WITH r AS (
			INSERT INTO requests (txn_key, bank, acquirer, stan, transmitted, terminal, mti_class, mti, rrn, fingerprint,
				card_id, txn_type, amount, response_code, auth_code, response, local_date, local_time, currency, state, business_date, sealed_by)
			SELECT k, b, a, s, tr, te, cl, m, rr, f, c, tt, am, co, au, re, ld, lt, cu, 'answered',
				coalesce(bd, (now() AT TIME ZONE 'Asia/Shanghai')::date), sb
			FROM unnest($1::bytea[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
				$10::bytea[], $11::bigint[], $12::text[], $13::bigint[], $14::text[], $15::text[], $16::bytea[], $17::text[],
				$18::text[], $19::text[], $30::date[], $31::int[]) WITH ORDINALITY AS x(k, b, a, s, tr, te, cl, m, rr, f, c, tt, am, co, au, re, ld, lt, cu, bd, sb, i)
			ORDER BY i
			RETURNING id, txn_key),
		t AS (
			INSERT INTO transfers (request_id, kind, debit_account, credit_account, currency, amount)
			SELECT r.id, t.kind, t.debit, t.credit, t.currency, t.amount
			FROM unnest($20::bytea[], $21::text[], $22::bigint[], $23::bigint[], $24::text[], $25::bigint[]) WITH ORDINALITY
				AS t(key, kind, debit, credit, currency, amount, i)
			JOIN r ON r.txn_key = t.key
			ORDER BY t.i
			RETURNING 1),
		h AS (
			INSERT INTO holds (request_id, account_id, amount, remaining, expires_at)
			SELECT r.id, h.account, h.amount, h.amount, h.expires
			FROM unnest($26::bytea[], $27::bigint[], $28::bigint[], $29::timestamptz[]) WITH ORDINALITY AS h(key, account, amount, expires, i)
			JOIN r ON r.txn_key = h.key
			ORDER BY h.i
			RETURNING 1)
		SELECT id, txn_key, (SELECT count(*) FROM t), (SELECT count(*) FROM h) FROM r`,
		keys, bank, acq, stan, trans, term, class, mti, rrn, fingerprint, card, txnT, amount, code, auth, response,
		localDate, localTime, currency,
		tKey, tKind, tDebit, tCredit, tCurrency, tAmount,
		hKey, hAccount, hAmount, hExpires, bizDate, sealedBy)
	// What else a decision implies (an exception raised, say) names its
	// request by key.
	for i := range recs {
		for _, e := range effects[i] {
			switch e.(type) {
			case transfer, placeHold:
			default:
				e.queue(b, `(SELECT id FROM requests WHERE txn_key = '\x`+hex.EncodeToString(keys[i])+`'::bytea)`)
			}
		}
	}
	br := tx.tx.SendBatch(ctx, b)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("saving requests: %w", err)
	}
	idOf := make(map[string]int64, n)
	var transfers, holds int64
	for rows.Next() {
		var (
			id  int64
			key []byte
		)
		if err := rows.Scan(&id, &key, &transfers, &holds); err != nil {
			rows.Close()
			return nil, fmt.Errorf("saving requests: %w", err)
		}
		idOf[string(key)] = id
	}
	if rows.Close(); rows.Err() != nil {
		return nil, fmt.Errorf("saving requests: %w", rows.Err())
	}
	if transfers != int64(len(tKey)) || holds != int64(len(hKey)) {
		return nil, fmt.Errorf("ledger: a group wrote %d of its %d transfers and %d of its %d holds", transfers, len(tKey), holds, len(hKey))
	}
	for _, e := range others {
		tag, err := br.Exec()
		if err != nil {
			return nil, fmt.Errorf("writing %T: %w", e, err)
		}
		if err := e.check(tag.RowsAffected()); err != nil {
			return nil, err
		}
	}
	if err := br.Close(); err != nil {
		return nil, err
	}
	ids := make([]int64, n)
	for i, k := range keys {
		if ids[i] = idOf[string(k)]; ids[i] == 0 {
			return nil, fmt.Errorf("ledger: request %d of a group was not saved", i)
		}
	}
	return ids, nil
}
