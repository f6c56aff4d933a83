package ledger

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"time"
)

// Fields a bank may name as identifying a transaction (config's txn_key),
// in the order they enter a key's digest.
const (
	FieldAcquirer    = "acquirer"    // DE32
	FieldSTAN        = "stan"        // DE11
	FieldTransmitted = "transmitted" // DE7
	FieldTerminal    = "terminal"    // DE41
	FieldRRN         = "rrn"         // DE37
	FieldLocalDate   = "local_date"  // DE13
	FieldLocalTime   = "local_time"  // DE12
	FieldMerchant    = "merchant"    // DE42
)

// KeyFields are the fields a key may be made of, in digest order.
var KeyFields = []string{FieldAcquirer, FieldSTAN, FieldTransmitted, FieldTerminal, FieldRRN, FieldLocalDate, FieldLocalTime, FieldMerchant}

// DefaultKeyFields identify a transaction when its bank names none: what
// stays the same on every transmission of it. DE7 is left out, since many
// acquirers stamp it afresh on each.
var DefaultKeyFields = []string{FieldAcquirer, FieldSTAN, FieldTerminal, FieldRRN, FieldLocalDate, FieldLocalTime}

// Key identifies a request for idempotency: a repeat or retransmission of
// a message carries the same key. Class is the MTI without its repeat
// digit ("010" for 0100 and 0101). The key is the digest of the bank, the
// class and the identifying fields that Fields names (DefaultKeyFields when
// nil); all of them are stored with the request.
type Key struct {
	Bank        string
	Class       string
	Acquirer    string // DE32, leading zeros removed
	STAN        string // DE11
	Transmitted string // DE7
	Terminal    string // DE41
	RRN         string // DE37
	LocalDate   string // DE13
	LocalTime   string // DE12
	Merchant    string // DE42
	Fields      []string
	// Actual is, for a reversal, what it says stands (DE95): a reversal
	// that says less stands than an earlier one of the same transaction is
	// a statement of its own, not a repeat of it.
	Actual string
}

func (k Key) field(name string) string {
	switch name {
	case FieldAcquirer:
		return k.Acquirer
	case FieldSTAN:
		return k.STAN
	case FieldTransmitted:
		return k.Transmitted
	case FieldTerminal:
		return k.Terminal
	case FieldRRN:
		return k.RRN
	case FieldLocalDate:
		return k.LocalDate
	case FieldLocalTime:
		return k.LocalTime
	case FieldMerchant:
		return k.Merchant
	}
	return ""
}

// Names reports whether the key is made of the named field.
func (k Key) Names(name string) bool {
	fields := k.Fields
	if fields == nil {
		fields = DefaultKeyFields
	}
	return slices.Contains(fields, name)
}

// Digest is the key as stored: the first 16 bytes of SHA-256 over the
// bank, the class and "name=value" for each named field in KeyFields'
// order (then "actual=" and Actual when set), separated by 0x1f.
func (k Key) Digest() []byte {
	b := make([]byte, 0, 128)
	b = append(b, k.Bank...)
	b = append(b, 0x1f)
	b = append(b, k.Class...)
	for _, name := range KeyFields {
		if !k.Names(name) {
			continue
		}
		b = append(b, 0x1f)
		b = append(b, name...)
		b = append(b, '=')
		b = append(b, k.field(name)...)
	}
	if k.Actual != "" {
		b = append(b, "\x1factual="...)
		b = append(b, k.Actual...)
	}
	sum := sha256.Sum256(b)
	return sum[:16]
}

// legacyFields identified a request before banks named their own.
var legacyFields = []string{FieldAcquirer, FieldSTAN, FieldTransmitted, FieldTerminal}

// LegacyDigest is the key a request would have had before banks named the
// fields of their keys (see Digest): requests answered then are found by
// it.
func (k Key) LegacyDigest() []byte {
	k.Fields, k.Actual = legacyFields, ""
	return k.Digest()
}

// legacyWindow is how long after a request answered before banks named
// their keys a repeat of it may still come: the one-day window the
// look-up by its old fields keeps.
const legacyWindow = 24 * time.Hour

// legacyCheckEvery is how often the ledger asks whether it still holds
// requests answered before banks named their keys that a repeat may name.
const legacyCheckEvery = time.Minute

// legacyOpen reports whether requests answered before banks named their
// keys may still see repeats: only then does a look-up search by their
// old keys, which costs every request an index probe or two. It asks the
// database (through q, the transaction's own connection) at most once a
// minute.
func (l *Ledger) legacyOpen(ctx context.Context, q querier) bool {
	now := time.Now()
	l.legacy.mu.Lock()
	if !l.legacy.checked.IsZero() && now.Sub(l.legacy.checked) < legacyCheckEvery {
		open := now.Before(l.legacy.until)
		l.legacy.mu.Unlock()
		return open
	}
	l.legacy.checked = now // the others take what is known meanwhile
	l.legacy.mu.Unlock()
	var last *time.Time
	if err := q.QueryRow(ctx, `SELECT max(created_at) FROM requests WHERE legacy`).Scan(&last); err != nil {
		l.legacy.mu.Lock()
		l.legacy.checked = time.Time{} // ask again next time
		l.legacy.mu.Unlock()
		return true // look, rather than post a repeat twice
	}
	until := time.Time{}
	if last != nil {
		until = last.Add(legacyWindow)
	}
	l.legacy.mu.Lock()
	l.legacy.until = until
	l.legacy.mu.Unlock()
	return now.Before(until)
}

// newClaim returns a random, non-zero claim on a request being decided.
func newClaim() int64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:])
		if c := int64(binary.BigEndian.Uint64(b[:]) >> 1); c != 0 {
			return c
		}
	}
}
