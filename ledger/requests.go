package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Key identifies a request for idempotency: a repeat or retransmission of
// a message carries the same key. Class is the MTI without its repeat
// digit ("010" for 0100 and 0101).
type Key struct {
	Bank        string
	Acquirer    string // DE32, leading zeros removed
	STAN        string // DE11
	Transmitted string // DE7
	Terminal    string // DE41
	Class       string
}

// Prior is a request already answered under a key.
type Prior struct {
	ID           int64
	Fingerprint  []byte
	ResponseCode string
	Response     []byte
}

// Lookup is what a new request needs to know before it is decided.
type Lookup struct {
	// Prior is the request already answered under the same key, if any.
	Prior *Prior
	// ReversedBy is the id of a reversal that arrived before this
	// request and undid it in advance, or zero.
	ReversedBy int64
	// Card is the request's card, locked, or nil when its PAN is unknown.
	Card *Card
}

// Find says what LookupRequest looks for.
type Find struct {
	Key Key
	// Serial names the original transaction this request belongs to
	// (see SerialKey); requests with the same Serial take turns.
	Serial string
	// CheckReversed asks for a reversal that arrived before this request,
	// matched by Key's original fields or by RRN and STAN.
	CheckReversed bool
	RRN           string
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
// finish, then finds the prior answer under the key, a reversal waiting
// for this request, and locks the card, in one round trip.
func (tx *Tx) LookupRequest(ctx context.Context, f Find) (*Lookup, error) {
	key := f.Key
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, f.Serial)
	b.Queue(`SELECT id, fingerprint, response_code, response FROM requests
		WHERE bank = $1 AND acquirer = $2 AND stan = $3 AND transmitted = $4 AND terminal = $5 AND mti_class = $6`,
		key.Bank, key.Acquirer, key.STAN, key.Transmitted, key.Terminal, key.Class)
	if f.CheckReversed {
		// Two plain index lookups: an OR of the two would defeat a
		// prepared statement's generic plan.
		b.Queue(`SELECT id FROM requests
			WHERE reverses IS NULL AND orig_stan IS NOT NULL
			  AND bank = $1 AND orig_acquirer = $2 AND orig_stan = $3 AND orig_transmitted = $4
			  AND terminal = $5 AND orig_class = $6
			UNION ALL
			SELECT id FROM requests
			WHERE reverses IS NULL AND mti_class IN ('040', '042')
			  AND bank = $1 AND acquirer = $2 AND rrn = $7 AND terminal = $5 AND stan = $3 AND $7 <> ''
			ORDER BY id LIMIT 1`,
			key.Bank, key.Acquirer, key.STAN, key.Transmitted, key.Terminal, key.Class, f.RRN)
	}
	if f.PAN != "" {
		b.Queue(cardQuery+` WHERE c.pan = $1 ORDER BY a.id FOR UPDATE OF a`, f.PAN, f.Day)
	}
	br := tx.tx.SendBatch(ctx, b)
	defer br.Close()

	if _, err := br.Exec(); err != nil {
		return nil, fmt.Errorf("waiting for the transaction's other requests: %w", err)
	}
	out := &Lookup{}
	var p Prior
	err := br.QueryRow().Scan(&p.ID, &p.Fingerprint, &p.ResponseCode, &p.Response)
	switch {
	case err == nil:
		out.Prior = &p
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("looking up request: %w", err)
	}
	if f.CheckReversed {
		err := br.QueryRow().Scan(&out.ReversedBy)
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
	Key          Key
	MTI          string
	RRN          string
	Fingerprint  []byte
	CardID       int64 // zero when the card is unknown
	TxnType      string
	Amount       int64
	ResponseCode string
	AuthCode     string
	Response     []byte // the packed response, sent again for a repeat
	// Reverses is the request a reversal undid, or zero.
	Reverses int64
	// Orig is, for a reversal whose original has not been seen, the
	// original's key as DE90 gives it.
	Orig *Key
}

// Save writes a request's record and the effects of its decision in one
// round trip and returns the record's id. Ids of one card's requests
// follow the order they were committed in, as each is taken under the
// card's row lock.
func (tx *Tx) Save(ctx context.Context, r Record, effects []Effect) (int64, error) {
	var cardID, reverses *int64
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
	var auth *string
	if r.AuthCode != "" {
		auth = &r.AuthCode
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO requests (bank, acquirer, stan, transmitted, terminal, mti_class, mti, rrn, fingerprint,
			card_id, txn_type, amount, response_code, auth_code, response, reverses,
			orig_class, orig_acquirer, orig_stan, orig_transmitted)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
		RETURNING id`,
		r.Key.Bank, r.Key.Acquirer, r.Key.STAN, r.Key.Transmitted, r.Key.Terminal, r.Key.Class, r.MTI, r.RRN, r.Fingerprint,
		cardID, r.TxnType, r.Amount, r.ResponseCode, auth, r.Response, reverses, oc, oa, os, ot)
	for _, e := range effects {
		e.queue(b, "currval('requests_id_seq')")
	}
	var id int64
	return id, tx.sendEffects(ctx, b, effects, &id)
}

// Original is the request a reversal or completion refers to, locked.
type Original struct {
	ID           int64
	Class        string
	TxnType      string
	CardID       int64
	Amount       int64
	ResponseCode string
	// ReversedBy is the reversal that already undid it, or zero.
	ReversedBy int64
	// Hold is the hold it placed, or nil.
	Hold *Hold
}

// Approved reports whether the original was approved.
func (o *Original) Approved() bool { return o.ResponseCode == "00" }

// OriginalRef says how to find an original request.
type OriginalRef struct {
	// Key, when set, is the original's own key (from DE90).
	Key *Key
	// Otherwise the original is matched by these of its fields; STAN
	// may be empty to match any.
	Bank, Acquirer, RRN, Terminal, STAN string
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
	if k := ref.Key; k != nil {
		where = `r.bank = $1 AND r.acquirer = $2 AND r.stan = $3 AND r.transmitted = $4 AND r.terminal = $5 AND r.mti_class = $6`
		args = []any{k.Bank, k.Acquirer, k.STAN, k.Transmitted, k.Terminal, k.Class}
	} else {
		if ref.RRN == "" {
			return nil, nil
		}
		where = `r.bank = $1 AND r.acquirer = $2 AND r.rrn = $3 AND r.terminal = $4 AND r.mti_class = ANY($5)`
		args = []any{ref.Bank, ref.Acquirer, ref.RRN, ref.Terminal, ref.Classes}
		if ref.STAN != "" {
			where += ` AND r.stan = $6`
			args = append(args, ref.STAN)
		}
	}
	if ref.ActiveHold {
		where += ` AND EXISTS (SELECT 1 FROM holds x WHERE x.request_id = r.id AND x.state = 'active')`
	}
	row := tx.tx.QueryRow(ctx, `
		SELECT r.id, r.mti_class, r.txn_type, coalesce(r.card_id, 0), r.amount, r.response_code,
			coalesce((SELECT v.id FROM requests v WHERE v.reverses = r.id), 0),
			h.id, h.amount, h.remaining, h.state
		FROM requests r LEFT JOIN holds h ON h.request_id = r.id
		WHERE `+where+`
		ORDER BY r.id DESC LIMIT 1
		FOR UPDATE OF r`, args...)
	var (
		o                        Original
		hid, hamount, hremaining *int64
		hstate                   *string
	)
	err := row.Scan(&o.ID, &o.Class, &o.TxnType, &o.CardID, &o.Amount, &o.ResponseCode, &o.ReversedBy,
		&hid, &hamount, &hremaining, &hstate)
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
