package ledger

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// KEK is the key-encryption key the ledger's data keys are wrapped under.
// The database holds only wrapped keys; the KEK stays with the switch (a
// file or the environment) or in an HSM or a cloud KMS, which implement
// Wrap and Unwrap as their encrypt and decrypt calls.
type KEK interface {
	// ID names the KEK that Wrap uses now (its check value).
	ID() string
	// Wrap seals key under the current KEK, bound to aad.
	Wrap(key, aad []byte) ([]byte, error)
	// Unwrap opens a key wrapped under the KEK kekID for aad.
	Unwrap(kekID string, wrapped, aad []byte) ([]byte, error)
}

// ErrKEK is a KEK that does not open the database's data keys: the switch
// was given the wrong one.
var ErrKEK = errors.New("ledger: the KEK does not open the database's data keys")

// Purposes of data keys.
const (
	keyData   = "data"
	keyLookup = "lookup"
)

// What a sealed value is and whose, bound into its seal: a PAN is bound
// to its card's lookup hash and a response to its request's key, so that
// neither opens in another row, nor as the other.
func aadPAN(hash []byte) []byte { return append([]byte("goldcard/card/pan/"), hash...) }

func aadResponse(txnKey []byte) []byte {
	return append([]byte("goldcard/request/response/"), txnKey...)
}

// keyring is the ledger's data keys, unwrapped, and the lookup key.
type keyring struct {
	kek KEK

	// mu guards data and active: keys are added as they are made or
	// met, and active moves to the newest.
	mu     sync.RWMutex
	data   map[int32]cipher.AEAD
	active int32

	lookup, fingerprint sync.Pool // of hash.Hash, keyed
}

func keyAAD(purpose string, id int32) []byte {
	return []byte("goldcard/data-key/" + purpose + "/" + strconv.Itoa(int(id)))
}

// CheckKEK reports whether kek opens every data key the database at pool
// holds (none yet is fine). It reads only, so a switch given the wrong KEK
// stops before it changes anything.
func CheckKEK(ctx context.Context, pool *pgxpool.Pool, kek KEK) error {
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('public.data_keys') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("reading data keys: %w", err)
	}
	if !exists {
		return nil
	}
	_, err := readKeys(ctx, pool, kek)
	return err
}

type storedKey struct {
	id      int32
	purpose string
	key     []byte
}

func readKeys(ctx context.Context, q querier, kek KEK) ([]storedKey, error) {
	rows, err := q.Query(ctx, `SELECT id, purpose, wrapped, kek FROM data_keys ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("reading data keys: %w", err)
	}
	defer rows.Close()
	var out []storedKey
	for rows.Next() {
		var (
			k           storedKey
			wrapped     []byte
			wrappedWith string
		)
		if err := rows.Scan(&k.id, &k.purpose, &wrapped, &wrappedWith); err != nil {
			return nil, fmt.Errorf("reading data keys: %w", err)
		}
		if k.key, err = kek.Unwrap(wrappedWith, wrapped, keyAAD(k.purpose, k.id)); err != nil {
			return nil, fmt.Errorf("%w: %s key %d: %w", ErrKEK, k.purpose, k.id, err)
		}
		if len(k.key) != 32 {
			return nil, fmt.Errorf("%w: %s key %d is %d bytes", ErrKEK, k.purpose, k.id, len(k.key))
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// openKeyring reads the data keys, making the first data key and the
// lookup key if the database has none.
func openKeyring(ctx context.Context, pool *pgxpool.Pool, kek KEK) (*keyring, error) {
	r := &keyring{kek: kek, data: map[int32]cipher.AEAD{}}
	keys, err := readKeys(ctx, pool, kek)
	if err != nil {
		return nil, err
	}
	var haveData, haveLookup bool
	for _, k := range keys {
		haveData = haveData || k.purpose == keyData
		haveLookup = haveLookup || k.purpose == keyLookup
	}
	if !haveData || !haveLookup {
		if err := makeFirstKeys(ctx, pool, kek); err != nil {
			return nil, err
		}
		if keys, err = readKeys(ctx, pool, kek); err != nil {
			return nil, err
		}
	}
	for _, k := range keys {
		r.add(k)
	}
	return r, nil
}

// makeFirstKeys makes whichever of the lookup key and the first data key
// is missing; switches starting together take turns.
func makeFirstKeys(ctx context.Context, pool *pgxpool.Pool, kek KEK) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("making data keys: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `LOCK TABLE data_keys IN EXCLUSIVE MODE`); err != nil {
		return fmt.Errorf("making data keys: %w", err)
	}
	for _, purpose := range []string{keyLookup, keyData} {
		var have bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM data_keys WHERE purpose = $1)`, purpose).Scan(&have); err != nil {
			return fmt.Errorf("making data keys: %w", err)
		}
		if !have {
			if _, err := insertKey(ctx, tx, kek, purpose); err != nil {
				return err
			}
		}
	}
	return tx.Commit(ctx)
}

// insertKey makes a new key of purpose, wrapped under kek, in a
// transaction that holds data_keys' lock.
func insertKey(ctx context.Context, tx pgx.Tx, kek KEK, purpose string) (int32, error) {
	var id int32
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(id), 0) + 1 FROM data_keys`).Scan(&id); err != nil {
		return 0, fmt.Errorf("making a %s key: %w", purpose, err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	wrapped, err := kek.Wrap(key, keyAAD(purpose, id))
	clear(key)
	if err != nil {
		return 0, fmt.Errorf("wrapping a new %s key: %w", purpose, err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO data_keys (id, purpose, wrapped, kek) VALUES ($1, $2, $3, $4)`, id, purpose, wrapped, kek.ID())
	if err != nil {
		return 0, fmt.Errorf("making a %s key: %w", purpose, err)
	}
	return id, nil
}

func (r *keyring) add(k storedKey) {
	if k.purpose == keyLookup {
		// Two keys of one: one hashes PANs, the other fingerprints.
		derive := func(label string) []byte {
			m := hmac.New(sha256.New, k.key)
			m.Write([]byte(label))
			return m.Sum(nil)
		}
		pans, fp := derive("goldcard/card/pan-hash"), derive("goldcard/request/fingerprint")
		r.lookup.New = func() any { return hmac.New(sha256.New, pans) }
		r.fingerprint.New = func() any { return hmac.New(sha256.New, fp) }
		return
	}
	block, _ := aes.NewCipher(k.key)
	aead, _ := cipher.NewGCMWithRandomNonce(block)
	r.mu.Lock()
	r.data[k.id] = aead
	r.active = max(r.active, k.id)
	r.mu.Unlock()
}

func keyed(p *sync.Pool, b []byte) []byte {
	m := p.Get().(hash.Hash)
	m.Reset()
	m.Write(b)
	out := m.Sum(nil)
	p.Put(m)
	return out
}

// panHash is the card lookup hash of a PAN.
func (r *keyring) panHash(pan string) []byte { return keyed(&r.lookup, []byte(pan)) }

// Fingerprint keys a request's content digest, so that a stored
// fingerprint reveals nothing of the PAN in it. Records carry it in this
// form, and priors are read in it.
func (l *Ledger) Fingerprint(digest []byte) []byte { return keyed(&l.keys.fingerprint, digest) }

// seal seals plain under the active data key and returns the key's id.
func (r *keyring) seal(plain, aad []byte) ([]byte, int32) {
	r.mu.RLock()
	id := r.active
	aead := r.data[id]
	r.mu.RUnlock()
	return aead.Seal(nil, nil, plain, aad), id
}

// open opens what seal sealed under the key id, reading the key through q
// if this ledger has not met it yet (another switch made it).
func (r *keyring) open(ctx context.Context, q querier, id int32, sealed, aad []byte) ([]byte, error) {
	r.mu.RLock()
	aead := r.data[id]
	r.mu.RUnlock()
	if aead == nil {
		if err := r.refresh(ctx, q); err != nil {
			return nil, err
		}
		r.mu.RLock()
		aead = r.data[id]
		r.mu.RUnlock()
		if aead == nil {
			return nil, fmt.Errorf("ledger: no data key %d", id)
		}
	}
	plain, err := aead.Open(nil, nil, sealed, aad)
	if err != nil {
		return nil, fmt.Errorf("ledger: a value sealed under data key %d does not open: altered, or moved from another row", id)
	}
	return plain, nil
}

// refresh adds the data keys made since the keyring was read.
func (r *keyring) refresh(ctx context.Context, q querier) error {
	keys, err := readKeys(ctx, q, r.kek)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.purpose == keyData {
			r.add(k)
		}
	}
	return nil
}

func (r *keyring) activeKey() int32 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.active
}

// openResponse is the stored response of the request txnKey as sent:
// opened, or as it was stored before responses were sealed (sealedBy nil).
func (l *Ledger) openResponse(ctx context.Context, q querier, txnKey []byte, sealedBy *int32, stored []byte) ([]byte, error) {
	if sealedBy == nil || stored == nil {
		return stored, nil
	}
	return l.keys.open(ctx, q, *sealedBy, stored, aadResponse(txnKey))
}

// SealPAN is what a card stores of pan: the hash it is found by, the PAN
// sealed, the key sealing it and the PAN masked. For bulk loaders; the
// ledger's own writes seal what they store themselves.
func (l *Ledger) SealPAN(pan string) (hash, sealed []byte, key int32, masked string) {
	p := l.keys.sealPAN(pan)
	return p.hash, p.sealed, p.key, p.masked
}

// SealResponse is SealPAN for the stored response of the request keyed
// txnKey (its Key.Digest).
func (l *Ledger) SealResponse(txnKey, resp []byte) ([]byte, int32) {
	return l.sealResponse(txnKey, resp)
}

// sealResponse is a response as stored, and the key it is sealed under.
func (l *Ledger) sealResponse(txnKey, resp []byte) ([]byte, int32) {
	if resp == nil {
		return nil, l.keys.activeKey()
	}
	return l.keys.seal(resp, aadResponse(txnKey))
}

// sealedPAN is what a card stores of its PAN.
type sealedPAN struct {
	hash, sealed []byte
	key          int32
	masked       string
}

func (r *keyring) sealPAN(pan string) sealedPAN {
	s := sealedPAN{hash: r.panHash(pan), masked: maskPAN(pan)}
	s.sealed, s.key = r.seal([]byte(pan), aadPAN(s.hash))
	return s
}

// maskPAN keeps the first six and last four digits of a valid PAN.
func maskPAN(pan string) string {
	b := []byte(pan)
	for i := 6; i < len(b)-4; i++ {
		b[i] = '*'
	}
	return string(b)
}

// DataKey is a data key as KeyStatus shows it.
type DataKey struct {
	ID        int32     `json:"id"`
	Purpose   string    `json:"purpose"`
	KEK       string    `json:"kek"`
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
	// Resealed says how far rows under earlier keys have been sealed again
	// under this one: by card and request id, and when that finished.
	ResealedCards    int64      `json:"resealed_cards"`
	ResealedRequests int64      `json:"resealed_requests"`
	ResealedAt       *time.Time `json:"resealed_at,omitempty"`
}

// KeyStatus lists the data keys, and the KEK this ledger wraps under.
func (l *Ledger) KeyStatus(ctx context.Context) (kek string, keys []DataKey, err error) {
	rows, err := l.pool.Query(ctx, `SELECT id, purpose, kek, created_at, resealed_cards, resealed_requests, resealed_at
		FROM data_keys ORDER BY id`)
	if err != nil {
		return "", nil, fmt.Errorf("reading data keys: %w", err)
	}
	defer rows.Close()
	active := l.keys.activeKey()
	keys = []DataKey{}
	for rows.Next() {
		var k DataKey
		if err := rows.Scan(&k.ID, &k.Purpose, &k.KEK, &k.CreatedAt, &k.ResealedCards, &k.ResealedRequests, &k.ResealedAt); err != nil {
			return "", nil, fmt.Errorf("reading data keys: %w", err)
		}
		k.Active = k.Purpose == keyData && k.ID == active
		keys = append(keys, k)
	}
	return l.keys.kek.ID(), keys, rows.Err()
}

// RotateDataKey makes a new data key, wrapped under the current KEK, and
// seals what this ledger writes from now on under it. Other switches move
// to it when told (UseDataKey); Reseal seals earlier rows again under it.
func (l *Ledger) RotateDataKey(ctx context.Context) (int32, error) {
	var id int32
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE data_keys IN EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("rotating the data key: %w", err)
		}
		var err error
		id, err = insertKey(ctx, tx, l.keys.kek, keyData)
		return err
	})
	if err != nil {
		return 0, err
	}
	return id, l.UseDataKey(ctx, id)
}

// DataKeyInUse is the id of the data key this ledger seals under.
func (l *Ledger) DataKeyInUse() int32 { return l.keys.activeKey() }

// UseDataKey seals what this ledger writes under the data key id from now
// on, if it is newer than the one in use.
func (l *Ledger) UseDataKey(ctx context.Context, id int32) error {
	if id <= l.keys.activeKey() {
		return nil
	}
	if err := l.keys.refresh(ctx, l.pool); err != nil {
		return err
	}
	if l.keys.activeKey() < id {
		return fmt.Errorf("ledger: no data key %d in the database", id)
	}
	return nil
}

// RewrapKeys wraps every data key under the current KEK (after a KEK
// rotation, while the earlier KEK is still given) and returns how many
// were wrapped under another. Nothing sealed under the keys changes.
func (l *Ledger) RewrapKeys(ctx context.Context) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		n = 0
		if _, err := tx.Exec(ctx, `LOCK TABLE data_keys IN EXCLUSIVE MODE`); err != nil {
			return fmt.Errorf("rewrapping data keys: %w", err)
		}
		keys, err := readKeys(ctx, tx, l.keys.kek)
		if err != nil {
			return err
		}
		for _, k := range keys {
			wrapped, err := l.keys.kek.Wrap(k.key, keyAAD(k.purpose, k.id))
			clear(k.key)
			if err != nil {
				return fmt.Errorf("rewrapping %s key %d: %w", k.purpose, k.id, err)
			}
			tag, err := tx.Exec(ctx, `UPDATE data_keys SET wrapped = $2, kek = $3 WHERE id = $1 AND kek <> $3`, k.id, wrapped, l.keys.kek.ID())
			if err != nil {
				return fmt.Errorf("rewrapping %s key %d: %w", k.purpose, k.id, err)
			}
			n += int(tag.RowsAffected())
		}
		return nil
	})
	return n, err
}
