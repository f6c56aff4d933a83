package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Request states.
const (
	// StateDeciding is an original whose decision waits on something
	// outside the ledger (the fund company): copies that arrive meanwhile
	// wait for its answer.
	StateDeciding = "deciding"
	// StateReleased is a request answered without a decision (91): its
	// response is kept for the copies that waited, and a later repeat
	// decides it afresh.
	StateReleased = "released"
	// StateAnswered is a decided request; its response is final.
	StateAnswered = "answered"
)

// Prior is what the ledger holds under a request's key.
type Prior struct {
	ID int64
	// Fingerprint is the request's content fingerprint, keyed (see
	// Ledger.Fingerprint).
	Fingerprint  []byte
	State        string
	ResponseCode string // empty while deciding
	Response     []byte // nil while deciding
	// Claim names who is deciding it; Expired reports that its time to
	// answer has passed, so that a repeat may take it over.
	Claim   int64
	Expired bool
	// ReversedBy is a reversal already linked to it, or zero.
	ReversedBy int64
}

// Lookup is what a new request needs to know before it is decided.
type Lookup struct {
	// Prior is what is stored under the request's key, if anything.
	Prior *Prior
	// Waiting is the id of a reversal that arrived before this request,
	// waiting for it, or zero; WaitingStated is what that reversal says
	// stands of this request.
	Waiting       int64
	WaitingStated int64
	// Card is the request's card, locked, or nil when its PAN is unknown.
	Card *Card
}

// Find says what LookupRequest looks for.
type Find struct {
	Key Key
	// Serial names the original transaction this request belongs to
	// (see SerialKey); requests with the same Serial take turns.
	Serial string
	// CheckReversed asks for a reversal that arrived before this request
	// and waits for it: one naming it in DE90 (by another DE7 only when the
	// key leaves DE7 out, and then of the same local date), or one with its
	// RRN, STAN, terminal and acquirer and of the same local date; either of
	// the same amount and from the last day.
	CheckReversed bool
	Amount        int64
	// PAN, when set, names the card to lock.
	PAN string
	// Day is the quota day the card's redemptions are counted on.
	Day time.Time
}

// SerialKey names the transaction a message belongs to: an original, its
// repeats and its reversals share the acquirer, STAN and terminal of the
// original.
func SerialKey(bank, acquirer, stan, terminal string) string {
	return bank + "\x1f" + acquirer + "\x1f" + stan + "\x1f" + terminal
}

// LookupRequest waits for any other request of the same transaction to
// finish, then finds what is stored under the key, a reversal waiting for
// this request, and locks the card, in one round trip.
func (tx *Tx) LookupRequest(ctx context.Context, f Find) (*Lookup, error) {
	key := f.Key
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, f.Serial)
	if tx.l.legacyOpen(ctx, tx.tx) {
		// A request answered before banks named their keys is found by
		// the key it had then or, from the last day, by its DE32, DE11,
		// DE41 and DE37 (its repeat may carry another DE7).
		b.Queue(`SELECT id, fingerprint, sealed_by, txn_key, state, response_code, response, claim, expired, reversed_by FROM (
				SELECT 0 AS pri, r.id, r.fingerprint, r.sealed_by, r.txn_key, r.state, coalesce(r.response_code, '') AS response_code, r.response,
					coalesce(r.claim, 0) AS claim, coalesce(r.state = 'deciding' AND r.respond_by <= clock_timestamp(), false) AS expired,
					coalesce((SELECT min(x.id) FROM (SELECT v.id FROM requests v WHERE v.reverses = r.id OFFSET 0) x), 0) AS reversed_by
				FROM requests r WHERE r.txn_key = $1
				UNION ALL
				SELECT 1, r.id, r.fingerprint, r.sealed_by, r.txn_key, r.state, coalesce(r.response_code, ''), r.response, coalesce(r.claim, 0), false,
					coalesce((SELECT min(x.id) FROM (SELECT v.id FROM requests v WHERE v.reverses = r.id OFFSET 0) x), 0)
				FROM requests r WHERE r.txn_key = $2 AND r.legacy AND $2 <> $1
				UNION ALL
				SELECT 2, r.id, r.fingerprint, r.sealed_by, r.txn_key, r.state, coalesce(r.response_code, ''), r.response, coalesce(r.claim, 0), false,
					coalesce((SELECT min(x.id) FROM (SELECT v.id FROM requests v WHERE v.reverses = r.id OFFSET 0) x), 0)
				FROM requests r
				WHERE r.legacy AND r.stan = $3 AND r.terminal = $4 AND r.acquirer = $5 AND r.bank = $6 AND r.mti_class = $7
				  AND r.rrn = $8 AND $8 <> '' AND r.created_at > now() - interval '1 day'
			) p ORDER BY pri, id DESC LIMIT 1`,
			key.Digest(), key.LegacyDigest(), key.STAN, key.Terminal, key.Acquirer, key.Bank, key.Class, key.RRN)
	} else {
		b.Queue(`SELECT r.id, r.fingerprint, r.sealed_by, r.txn_key, r.state, coalesce(r.response_code, ''), r.response, coalesce(r.claim, 0),
				coalesce(r.state = 'deciding' AND r.respond_by <= clock_timestamp(), false),
				coalesce((SELECT min(x.id) FROM (SELECT v.id FROM requests v WHERE v.reverses = r.id OFFSET 0) x), 0)
			FROM requests r WHERE r.txn_key = $1`, key.Digest())
	}
	if f.CheckReversed {
		// Two plain index lookups: an OR of the two would defeat a
		// prepared statement's generic plan.
		b.Queue(`SELECT id, coalesce(stated, 0) FROM requests
			WHERE waiting AND orig_stan = $3 AND orig_acquirer = $2 AND bank = $1
			  AND terminal = $5 AND orig_class = $6
			  AND (orig_transmitted = $4 OR (NOT $10 AND (local_date = $9 OR local_date = '' OR $9 = '')))
			  AND amount = $8 AND created_at > now() - interval '1 day'
			UNION ALL
			SELECT id, coalesce(stated, 0) FROM requests
			WHERE waiting AND rrn = $7 AND terminal = $5 AND acquirer = $2 AND bank = $1 AND stan = $3 AND $7 <> ''
			  AND amount = $8 AND created_at > now() - interval '1 day' AND (local_date = $9 OR local_date = '' OR $9 = '')
			ORDER BY id LIMIT 1`,
			key.Bank, key.Acquirer, key.STAN, key.Transmitted, key.Terminal, key.Class, key.RRN, f.Amount, key.LocalDate,
			key.Names(FieldTransmitted))
	}
	if f.PAN != "" {
		where, more := tx.l.byPAN(f.PAN)
		b.Queue(cardQuery+` WHERE `+where+` ORDER BY a.id FOR UPDATE OF a`, append([]any{tx.l.keys.panHash(f.PAN), f.Day}, more...)...)
	}
	br := tx.tx.SendBatch(ctx, b)
	defer br.Close()

	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("waiting for the transaction's other requests: %w", err)
	}
	out := &Lookup{}
	var (
		p        Prior
		sealedBy *int32
		txnKey   []byte
	)
	err := br.QueryRow().Scan(&p.ID, &p.Fingerprint, &sealedBy, &txnKey, &p.State, &p.ResponseCode, &p.Response, &p.Claim, &p.Expired, &p.ReversedBy)
	switch {
	case err == nil:
		out.Prior = &p
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("looking up request: %w", err)
	}
	if f.CheckReversed {
		err := br.QueryRow().Scan(&out.Waiting, &out.WaitingStated)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("looking up early reversal: %w", err)
		}
	}
	if f.PAN != "" {
		rows, err := br.Query()
		if err != nil {
			return nil, fmt.Errorf("locking card: %w", err)
		}
		if out.Card, err = scanCard(rows); err != nil {
			return nil, err
		}
	}
	if err := br.Close(); err != nil {
		return nil, err
	}
	if out.Prior != nil {
		if err := tx.l.unseal(ctx, tx.tx, out.Prior, txnKey, sealedBy); err != nil {
			return nil, err
		}
	}
	if out.Card != nil {
		out.Card.day = f.Day
		if err := tx.l.resolveSystem(ctx, tx.tx, out.Card); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Record is a request and the response sent for it.
type Record struct {
	Key         Key
	MTI         string
	Currency    string // DE49 as sent
	Fingerprint []byte
	// BusinessDate is the day the request settles on (a date at UTC
	// midnight); zero: its arrival's date in Asia/Shanghai. A request
	// taken over keeps the date it was first stored with.
	BusinessDate time.Time
	CardID       int64 // zero when the card is unknown
	TxnType      string
	Amount       int64
	ResponseCode string
	AuthCode     string
	Response     []byte // the packed response, sent again for a repeat
	// Reverses is the original a reversal settled against, or zero. Stated
	// is what a reversal says stands of its original (DE95's actual
	// amount, or 0); Stands, for a reversal that moved money, is what
	// stands of the original after it.
	Reverses int64
	Stated   *int64
	Stands   *int64
	// Waiting marks a reversal whose original has never been seen; Orig is
	// then the original's key as DE90 gives it, if it does.
	Waiting bool
	Orig    *OrigKey
	// Over is the stored request this record takes the place of: one being
	// decided under its claim, one released, or one whose decider ran out
	// of time. Nil for a request new to the ledger.
	Over *Prior
}

// OrigKey is an original message as DE90 names it.
type OrigKey struct {
	Class, Acquirer, STAN, Transmitted string
}

// ErrClaimLost is a decision whose request was taken over by a repeat
// after its time to answer had passed.
var ErrClaimLost = errors.New("ledger: request taken over by a repeat")

// Save writes a request's record and the effects of its decision in one
// round trip and returns the record's id. Ids of one card's requests
// follow the order they were first stored in, as each is taken under the
// card's row lock.
func (tx *Tx) Save(ctx context.Context, r Record, effects []Effect) (int64, error) {
	return tx.store(ctx, r, effects, StateAnswered, 0, 0)
}

// BeginDeciding stores a request that is about to wait on something
// outside the ledger, as being decided until within from now on the
// database's clock, and returns its id and the claim to finish it under
// (Record.Over). Copies that arrive meanwhile wait for it (AwaitDecision).
func (tx *Tx) BeginDeciding(ctx context.Context, r Record, within time.Duration) (id, claim int64, err error) {
	claim = newClaim()
	id, err = tx.store(ctx, r, nil, StateDeciding, claim, within)
	return id, claim, err
}

func (tx *Tx) store(ctx context.Context, r Record, effects []Effect, state string, claim int64, within time.Duration) (int64, error) {
	var cardID, reverses, claimArg *int64
	if r.CardID != 0 {
		cardID = &r.CardID
	}
	if r.Reverses != 0 {
		reverses = &r.Reverses
	}
	var oc, oa, os, ot *string
	if r.Orig != nil {
		oc, oa, os, ot = &r.Orig.Class, &r.Orig.Acquirer, &r.Orig.STAN, &r.Orig.Transmitted
	}
	var auth, code *string
	if r.AuthCode != "" {
		auth = &r.AuthCode
	}
	resp := r.Response
	if state == StateDeciding {
		resp, auth = nil, nil
	} else {
		code = &r.ResponseCode
	}
	if claim != 0 {
		claimArg = &claim
	}
	k := r.Key
	resp, sealedBy := tx.l.sealResponse(k.Digest(), resp)
	args := pgx.NamedArgs{
		"key": k.Digest(), "bank": k.Bank, "acquirer": k.Acquirer, "stan": k.STAN, "transmitted": k.Transmitted,
		"terminal": k.Terminal, "class": k.Class, "mti": r.MTI, "rrn": k.RRN, "fingerprint": r.Fingerprint,
		"card": cardID, "txn_type": r.TxnType, "amount": r.Amount, "code": code, "auth": auth, "response": resp,
		"reverses": reverses, "oc": oc, "oa": oa, "os": os, "ot": ot,
		"local_date": k.LocalDate, "local_time": k.LocalTime, "currency": r.Currency, "state": state,
		"claim": claimArg, "within": within.Microseconds(), "waiting": r.Waiting, "stated": r.Stated, "stands": r.Stands,
		"business_date": nil, "sealed_by": sealedBy,
	}
	if !r.BusinessDate.IsZero() {
		args["business_date"] = r.BusinessDate
	}
	b := &pgx.Batch{}
	var requestSQL string
	if o := r.Over; o == nil {
		b.Queue(`INSERT INTO requests (txn_key, bank, acquirer, stan, transmitted, terminal, mti_class, mti, rrn, fingerprint,
				card_id, txn_type, amount, response_code, auth_code, response, reverses,
				orig_class, orig_acquirer, orig_stan, orig_transmitted,
				local_date, local_time, currency, state, claim, respond_by, waiting, stated, stands, business_date, sealed_by)
			VALUES (@key, @bank, @acquirer, @stan, @transmitted, @terminal, @class, @mti, @rrn, @fingerprint,
				@card, @txn_type, @amount, @code, @auth, @response, @reverses, @oc, @oa, @os, @ot,
				@local_date, @local_time, @currency, @state, @claim,
				CASE WHEN @claim::bigint IS NULL THEN NULL ELSE clock_timestamp() + @within::bigint * interval '1 microsecond' END,
				@waiting, @stated, @stands, coalesce(@business_date::date, (now() AT TIME ZONE 'Asia/Shanghai')::date), @sealed_by)
			RETURNING id`, args)
		requestSQL = "currval('requests_id_seq')"
	} else {
		// Taken over, or finished by its decider: a new claim starts a new
		// time to answer.
		args["over"], args["over_state"], args["over_claim"] = o.ID, o.State, o.Claim
		b.Queue(`UPDATE requests SET mti = @mti, rrn = @rrn, card_id = @card, txn_type = @txn_type, amount = @amount,
				response_code = @code, auth_code = @auth, response = @response, reverses = @reverses,
				orig_class = @oc, orig_acquirer = @oa, orig_stan = @os, orig_transmitted = @ot,
				local_date = @local_date, local_time = @local_time, currency = @currency, state = @state,
				claim = coalesce(@claim, claim),
				respond_by = CASE WHEN @claim::bigint IS NULL THEN respond_by
					ELSE clock_timestamp() + @within::bigint * interval '1 microsecond' END,
				waiting = @waiting, stated = @stated, stands = @stands, fingerprint = @fingerprint, sealed_by = @sealed_by
			WHERE id = @over AND state = @over_state AND coalesce(claim, 0) = @over_claim AND txn_key = @key
			RETURNING id`, args)
		requestSQL = strconv.FormatInt(o.ID, 10)
	}
	for _, e := range effects {
		e.queue(b, requestSQL)
	}
	var id int64
	err := tx.sendEffects(ctx, b, effects, &id)
	if r.Over != nil && errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrClaimLost
	}
	return id, err
}

// Release answers a request that was being decided under claim without a
// decision: its response (a 91) is kept for the copies that waited, and a
// later repeat decides it afresh. It reports false when the claim was
// lost meanwhile.
func (l *Ledger) Release(ctx context.Context, id, claim int64, code string, response []byte) (bool, error) {
	var txnKey []byte
	err := l.pool.QueryRow(ctx, `SELECT txn_key FROM requests WHERE id = $1 AND claim = $2 AND state = 'deciding'`, id, claim).Scan(&txnKey)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("releasing request %d: %w", id, err)
	}
	sealed, key := l.sealResponse(txnKey, response)
	tag, err := l.pool.Exec(ctx, `UPDATE requests SET state = 'released', response_code = $3, response = $4, sealed_by = $5
		WHERE id = $1 AND claim = $2 AND state = 'deciding'`, id, claim, code, sealed, key)
	if err != nil {
		return false, fmt.Errorf("releasing request %d: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// AwaitDecision waits until the request id is no longer being decided, or
// its time to answer has passed, and returns it as it then stands. It
// polls, backing off from 2 ms to 25 ms: a request waits on the fund
// company for tens of milliseconds or more, and copies are rare.
func (l *Ledger) AwaitDecision(ctx context.Context, id int64) (*Prior, error) {
	wait := 2 * time.Millisecond
	for {
		var (
			p        Prior
			sealedBy *int32
			txnKey   []byte
		)
		err := l.pool.QueryRow(ctx, `SELECT id, fingerprint, sealed_by, txn_key, state, coalesce(response_code, ''), response, coalesce(claim, 0),
				state = 'deciding' AND respond_by <= clock_timestamp()
			FROM requests WHERE id = $1`, id).
			Scan(&p.ID, &p.Fingerprint, &sealedBy, &txnKey, &p.State, &p.ResponseCode, &p.Response, &p.Claim, &p.Expired)
		if err != nil {
			return nil, fmt.Errorf("waiting for request %d: %w", id, err)
		}
		if p.State != StateDeciding || p.Expired {
			return &p, l.unseal(ctx, l.pool, &p, txnKey, sealedBy)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 25*time.Millisecond)
	}
}

// unseal opens a prior's stored response and keys a fingerprint stored
// before fingerprints were keyed (sealedBy nil), reading through q.
func (l *Ledger) unseal(ctx context.Context, q querier, p *Prior, txnKey []byte, sealedBy *int32) error {
	resp, err := l.openResponse(ctx, q, txnKey, sealedBy, p.Response)
	if err != nil {
		return fmt.Errorf("reading request %d: %w", p.ID, err)
	}
	p.Response = resp
	if sealedBy == nil {
		p.Fingerprint = l.Fingerprint(p.Fingerprint)
	}
	return nil
}

// Original is the request a reversal or completion refers to, locked.
type Original struct {
	ID           int64
	Class        string
	TxnType      string
	CardID       int64
	Amount       int64
	State        string
	ResponseCode string
	// Expired reports a request still being decided whose time to answer
	// has passed: its decider is gone.
	Expired bool
	// Stands is what of its amount stands after its reversals; ReversedBy
	// is the first reversal settled against it, or zero.
	Stands     int64
	ReversedBy int64
	// Hold is the hold it placed, or nil.
	Hold *Hold
}

// Approved reports whether the original was decided and approved.
func (o *Original) Approved() bool { return o.State == StateAnswered && o.ResponseCode == "00" }

// OriginalRef says how to find an original request.
type OriginalRef struct {
	Bank, Terminal string
	// ByDE90 finds the original DE90 names: its class, acquirer, STAN and
	// DE7. With AnyTransmission (a bank whose acquirers stamp DE7 afresh,
	// so DE90 may name another transmission's) one of another DE7 matches
	// too if it has RRN or Amount, is of LocalDate and from the last day;
	// the DE7 named is preferred.
	ByDE90          *OrigKey
	AnyTransmission bool
	Amount          int64
	// Otherwise the original is matched by these of its fields; STAN may
	// be empty to match any. Of several, the one of LocalDate and
	// LocalTime is preferred, then the one of Amount.
	Acquirer, RRN, STAN  string
	LocalDate, LocalTime string
	// Classes are the MTI classes the original may have.
	Classes []string
	// ActiveHold restricts the match to originals with an active hold.
	ActiveHold bool
}

// FindOriginal finds the newest request matching ref and locks it, so that
// two reversals or completions of one original take turns. It returns nil,
// nil when there is none.
func (tx *Tx) FindOriginal(ctx context.Context, ref OriginalRef) (*Original, error) {
	var (
		where string
		args  []any
	)
	order := `r.id DESC`
	if o := ref.ByDE90; o != nil {
		where = `r.stan = $1 AND r.terminal = $2 AND r.acquirer = $3 AND r.bank = $4 AND r.mti_class = $5 AND (r.transmitted = $6`
		args = []any{o.STAN, ref.Terminal, o.Acquirer, ref.Bank, o.Class, o.Transmitted}
		if ref.AnyTransmission {
			// Another transmission of the original: of the same local date
			// and the last day only, as a terminal's STANs come round again.
			where += ` OR (r.created_at > now() - interval '1 day' AND (r.local_date = $9 OR r.local_date = '' OR $9 = '')
				AND ((r.rrn = $7 AND $7 <> '') OR r.amount = $8))`
			args = append(args, ref.RRN, ref.Amount, ref.LocalDate)
			order = `r.transmitted = $6 DESC, ` + order
		}
		where += `)`
	} else {
		if ref.RRN == "" {
			return nil, nil
		}
		where = `r.rrn = $1 AND r.terminal = $2 AND r.acquirer = $3 AND r.bank = $4 AND r.mti_class = ANY($5)`
		args = []any{ref.RRN, ref.Terminal, ref.Acquirer, ref.Bank, ref.Classes, ref.LocalDate, ref.LocalTime, ref.Amount}
		// Of several with one RRN (and STAN), the one of the same local
		// date and time, then of the same amount, then the newest.
		order = `(r.local_date = $6 AND r.local_time = $7) DESC, r.amount = $8 DESC, ` + order
		if ref.STAN != "" {
			where += ` AND r.stan = $9`
			args = append(args, ref.STAN)
		}
	}
	if ref.ActiveHold {
		where += ` AND EXISTS (SELECT 1 FROM holds x WHERE x.request_id = r.id AND x.state = 'active')`
	}
	row := tx.tx.QueryRow(ctx, `
		SELECT r.id, r.mti_class, r.txn_type, coalesce(r.card_id, 0), r.amount, r.state, coalesce(r.response_code, ''),
			coalesce(r.state = 'deciding' AND r.respond_by <= clock_timestamp(), false),
			coalesce((SELECT min(v.stands) FROM requests v WHERE v.reverses = r.id), r.amount),
			coalesce((SELECT min(x.id) FROM (SELECT v.id FROM requests v WHERE v.reverses = r.id OFFSET 0) x), 0),
			h.id, h.amount, h.remaining, h.state
		FROM requests r LEFT JOIN holds h ON h.request_id = r.id
		WHERE r.mti_class NOT IN ('040', '042') AND `+where+`
		ORDER BY `+order+` LIMIT 1
		FOR UPDATE OF r`, args...)
	var (
		o                        Original
		hid, hamount, hremaining *int64
		hstate                   *string
	)
	err := row.Scan(&o.ID, &o.Class, &o.TxnType, &o.CardID, &o.Amount, &o.State, &o.ResponseCode, &o.Expired,
		&o.Stands, &o.ReversedBy, &hid, &hamount, &hremaining, &hstate)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("finding original: %w", err)
	}
	if hid != nil {
		o.Hold = &Hold{ID: *hid, Amount: *hamount, Remaining: *hremaining, State: *hstate}
	}
	return &o, nil
}
