package ledger_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
)

// response is a response as a bank gets it: DE2 echoes the PAN.
func response(pan string) []byte {
	return []byte("0210" + "7000000000000000" + fmt.Sprintf("%02d", len(pan)) + pan + "00")
}

// TestCardDataIsSealed: a card's PAN and the responses stored for its
// requests are nowhere in the database in the clear, yet the card is
// found by its PAN, shown masked, and a repeat gets the response back byte
// for byte.
func TestCardDataIsSealed(t *testing.T) {
	l, pool := ledgertest.New(t)
	ctx := context.Background()
	card := newCard(t, l, 10000, 0)
	if card.Masked != "622848******0001" {
		t.Fatalf("masked %q", card.Masked)
	}
	if _, err := l.CreateCard(ctx, ledger.NewCard{PAN: pan, Currency: "156"}); !errors.Is(err, ledger.ErrCardExists) {
		t.Fatalf("the same PAN again: %v, want ErrCardExists", err)
	}
	rec := record(card, "purchase", 100)
	rec.Response = response(pan)
	rec.Fingerprint = l.Fingerprint([]byte("digest"))
	if err := l.Do(ctx, func(tx *ledger.Tx) error {
		c, err := tx.LockCard(ctx, pan, time.Time{})
		if err != nil || c == nil {
			return fmt.Errorf("locking the card by PAN: %v %v", c, err)
		}
		_, err = tx.Save(ctx, rec, nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if found := ledgertest.Reveals(t, pool, []byte(pan), []byte(pan[6:12])); len(found) > 0 {
		t.Fatalf("the PAN is in the clear in %v", found)
	}
	byPAN, err := l.Card(ctx, pan, time.Time{})
	if err != nil || byPAN.ID != card.ID {
		t.Fatalf("by PAN: %+v, %v", byPAN, err)
	}
	prior, _ := lookUp(t, l, rec.Key, "")
	if prior == nil || !bytes.Equal(prior.Response, rec.Response) || !bytes.Equal(prior.Fingerprint, rec.Fingerprint) {
		t.Fatalf("prior %+v: want the response and fingerprint stored", prior)
	}
	// An answered request's response is final: only sealing it again
	// under a newer data key may change it, and what is sealed for one row
	// does not open in another.
	for _, attack := range []string{
		`UPDATE requests SET response = (SELECT pan_sealed FROM cards LIMIT 1) WHERE id = $1`,
		`UPDATE requests SET response = 'x', sealed_by = sealed_by + 1000 WHERE id = $1`,
		`UPDATE requests SET response = NULL, sealed_by = NULL WHERE id = $1`,
	} {
		if _, err := pool.Exec(ctx, attack, prior.ID); err == nil {
			t.Fatalf("%s: an answered request's response was changed", attack)
		}
	}
	other := record(card, "purchase", 100)
	other.Response = response("6228480000000002")
	if err := l.Do(ctx, func(tx *ledger.Tx) error { _, err := tx.Save(ctx, other, nil); return err }); err != nil {
		t.Fatal(err)
	}
	newer, err := l.RotateDataKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE requests SET response = (SELECT response FROM requests WHERE txn_key = $2), sealed_by = $3
		WHERE id = $1`, prior.ID, other.Key.Digest(), newer); err != nil {
		t.Fatal(err) // allowed by the schema: a newer key
	}
	err = l.Do(ctx, func(tx *ledger.Tx) error {
		_, err := tx.LookupRequest(ctx, ledger.Find{Key: rec.Key, Serial: "s"})
		return err
	})
	if err == nil {
		t.Fatal("another request's sealed response opened as this one's")
	}
	// Nothing in the clear is taken any more.
	if _, err := pool.Exec(ctx, `INSERT INTO cards (pan_clear, currency) VALUES ('6228480000000003', '156')`); err == nil {
		t.Fatal("a card with its PAN in the clear was taken")
	}
	if _, err := pool.Exec(ctx, `UPDATE cards SET pan_sealed = (SELECT response FROM requests WHERE txn_key = $1)`, other.Key.Digest()); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Card(ctx, pan, time.Time{}); err != nil {
		t.Fatal(err) // found by its hash
	}
	if _, _, err := l.CheckSealed(ctx, false); err == nil {
		t.Fatal("a PAN sealed for another row passed the check")
	}
	// Nor sealed again under a key that does not exist.
	if _, err := pool.Exec(ctx, `UPDATE requests SET response = $2, sealed_by = $3 WHERE id = $1`, prior.ID, []byte("x"), newer+1); err == nil {
		t.Fatal("sealed under a key that does not exist")
	}
}

// TestWrongKEK: a KEK that does not open the database's data keys is
// refused before anything is read or written with it.
func TestWrongKEK(t *testing.T) {
	_, pool := ledgertest.New(t)
	ctx := context.Background()
	other := ledgertest.NewKEK(bytes.Repeat([]byte{1}, 32), "0badc0de")
	if err := ledger.CheckKEK(ctx, pool, other); !errors.Is(err, ledger.ErrKEK) {
		t.Fatalf("CheckKEK with another KEK: %v, want ErrKEK", err)
	}
	if _, err := ledger.Open(ctx, pool, other); !errors.Is(err, ledger.ErrKEK) {
		t.Fatalf("Open with another KEK: %v, want ErrKEK", err)
	}
	// The same name, another key: the wrapping does not open.
	impostor := ledgertest.NewKEK(bytes.Repeat([]byte{1}, 32), ledgertest.KEK.ID())
	if err := ledger.CheckKEK(ctx, pool, impostor); !errors.Is(err, ledger.ErrKEK) {
		t.Fatalf("CheckKEK with a KEK of the right name: %v, want ErrKEK", err)
	}
	var keys int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM data_keys`).Scan(&keys); err != nil || keys != 2 {
		t.Fatalf("%d data keys (%v): want the lookup key and one data key, nothing added", keys, err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM data_keys`); err == nil {
		t.Fatal("data keys were deleted")
	}
}

// legacyLedger is a database migrated to 010, before card data was
// sealed, holding cards and answered requests as that build wrote them:
// PANs and responses in the clear, fingerprints not keyed. It returns the
// PANs, and each request's key, raw fingerprint and response.
func legacyLedger(t *testing.T, cards int) (*pgxpool.Pool, []string, []legacyRequest) {
	t.Helper()
	ctx := context.Background()
	pool, conn := migratedTo(t, 10)
	defer conn.Release()
	var settlement, opening int64
	for kind, dest := range map[string]*int64{"settlement": &settlement, "opening": &opening} {
		if err := conn.QueryRow(ctx, `INSERT INTO accounts (kind, currency) VALUES ($1, '156') RETURNING id`, kind).Scan(dest); err != nil {
			t.Fatal(err)
		}
	}
	var pans []string
	var reqs []legacyRequest
	for i := range cards {
		p := fmt.Sprintf("62284811%08d", i)
		var card, cash int64
		if err := conn.QueryRow(ctx, `INSERT INTO cards (pan, currency) VALUES ($1, '156') RETURNING id`, p).Scan(&card); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, `WITH a AS (INSERT INTO accounts (card_id, kind, currency)
				VALUES ($1, 'cash', '156'), ($1, 'fund', '156'), ($1, 'overdraft', '156') RETURNING id, kind)
			SELECT id FROM a WHERE kind = 'cash'`, card).Scan(&cash); err != nil {
			t.Fatal(err)
		}
		r := legacyRequest{
			key:      ledger.Key{Bank: "default", Acquirer: "1234", STAN: fmt.Sprintf("%06d", i), Transmitted: "1125101010", Terminal: "T1", Class: "020", RRN: fmt.Sprintf("%012d", i)},
			response: response(p),
		}
		d := sha256.Sum256([]byte(p + "purchase"))
		r.digest = d[:]
		var id int64
		err := conn.QueryRow(ctx, `WITH r AS (
				INSERT INTO requests (txn_key, bank, acquirer, stan, transmitted, terminal, mti_class, mti, rrn, fingerprint,
					card_id, txn_type, amount, response_code, response, local_date, local_time, currency, state, business_date)
				VALUES ($1, 'default', '1234', $2, '1125101010', 'T1', '020', '0200', $3, $4, $5, 'purchase', 100, '00', $6,
					'', '', '156', 'answered', current_date) RETURNING id),
			o AS (INSERT INTO transfers (kind, debit_account, credit_account, currency, amount) VALUES ('opening', $7, $8, '156', 1000))
			INSERT INTO transfers (request_id, kind, debit_account, credit_account, currency, amount)
			SELECT id, 'purchase', $8, $9, '156', 100 FROM r RETURNING request_id`,
			r.key.Digest(), r.key.STAN, r.key.RRN, r.digest, card, r.response, opening, cash, settlement).Scan(&id)
		if err != nil {
			t.Fatal(err)
		}
		pans, reqs = append(pans, p), append(reqs, r)
	}
	return pool, pans, reqs
}

// lookUp is what LookupRequest finds under key, and the card it locks by
// pan (if given).
func lookUp(t *testing.T, l *ledger.Ledger, key ledger.Key, pan string) (*ledger.Prior, *ledger.Card) {
	t.Helper()
	ctx := context.Background()
	var lk *ledger.Lookup
	if err := l.Do(ctx, func(tx *ledger.Tx) error {
		var err error
		lk, err = tx.LookupRequest(ctx, ledger.Find{Key: key, Serial: key.STAN, PAN: pan})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return lk.Prior, lk.Card
}

// resealAll runs Reseal in batches of batch until it is done.
func resealAll(t *testing.T, l *ledger.Ledger, batch int) {
	t.Helper()
	for {
		r, err := l.Reseal(context.Background(), batch)
		if err != nil {
			t.Fatal(err)
		}
		if r.Done {
			return
		}
	}
}

type legacyRequest struct {
	key              ledger.Key
	digest, response []byte
}

// TestPlainCardDataIsSealedInPlace: a ledger written before card data was
// sealed is sealed in batches while cards are used: every card is found
// by its PAN throughout, no PAN can be issued twice, a repeat of an old
// request gets its response byte for byte, and afterwards no PAN is left
// in the clear.
func TestPlainCardDataIsSealedInPlace(t *testing.T) {
	ctx := context.Background()
	pool, pans, reqs := legacyLedger(t, 60)
	if err := ledger.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	l := ledgertest.Open(t, pool)
	if _, err := l.CreateCard(ctx, ledger.NewCard{PAN: pans[0], Currency: "156"}); !errors.Is(err, ledger.ErrCardExists) {
		t.Fatalf("issuing a PAN stored in the clear again: %v, want ErrCardExists", err)
	}
	// Cards in use while they are sealed: each found by PAN, one by one
	// and in groups.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var uses atomic.Int64
	errs := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			p := pans[i%len(pans)]
			err := l.Do(ctx, func(tx *ledger.Tx) error {
				c, err := tx.LockCard(ctx, p, time.Time{})
				if err == nil && c == nil {
					err = fmt.Errorf("card %d not found by its PAN", i%len(pans))
				}
				if err != nil {
					return err
				}
				lks, err := tx.LookupGroup(ctx, []ledger.Find{{Key: reqs[(i+1)%len(reqs)].key, Serial: "g", PAN: pans[(i+1)%len(pans)]}})
				if err == nil && lks[0].Card == nil {
					err = fmt.Errorf("card %d not found by its PAN in a group", (i+1)%len(pans))
				}
				return err
			})
			if err != nil && !errors.Is(err, ledger.ErrNotGroupable) {
				select {
				case errs <- err:
				default:
				}
				return
			}
			uses.Add(1)
		}
	}()
	resealAll(t, l, 7)
	stop.Store(true)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	var plainCards, plainRequests int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM cards WHERE pan_clear IS NOT NULL OR pan_sealed IS NULL),
			(SELECT count(*) FROM requests WHERE sealed_by IS NULL)`).Scan(&plainCards, &plainRequests); err != nil {
		t.Fatal(err)
	}
	if plainCards != 0 || plainRequests != 0 {
		t.Fatalf("%d cards and %d requests left in the clear", plainCards, plainRequests)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO cards (pan_clear, currency) VALUES ('6228480000000009', '156')`); err == nil {
		t.Fatal("a card with its PAN in the clear was taken once every card was sealed")
	}
	needles := make([][]byte, len(pans))
	for i, p := range pans {
		needles[i] = []byte(p)
	}
	if found := ledgertest.Reveals(t, pool, needles...); len(found) > 0 {
		t.Fatalf("PANs in the clear in %v", found)
	}
	for i, r := range reqs {
		prior, card := lookUp(t, l, r.key, pans[i])
		if card == nil {
			t.Fatalf("card %d not found by its PAN", i)
		}
		if prior == nil || !bytes.Equal(prior.Response, r.response) || !bytes.Equal(prior.Fingerprint, l.Fingerprint(r.digest)) {
			t.Fatalf("request %d after sealing: %+v; want its response and its fingerprint, keyed", i, prior)
		}
	}
	t.Logf("cards used %d times while sealed", uses.Load())
}

// TestRotationWhileWriting: a data key rotated while requests are being
// saved loses none of them; earlier rows are sealed again under the new
// key and every row still opens.
func TestRotationWhileWriting(t *testing.T) {
	l, pool := ledgertest.New(t)
	ctx := context.Background()
	card := newCard(t, l, 1_000_000, 0)
	var (
		saved []ledger.Record
		mu    sync.Mutex
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	errs := make(chan error, 4)
	write := func() {
		defer wg.Done()
		for !stop.Load() {
			rec := record(card, "purchase", 1)
			rec.Response = response(pan + rec.Key.STAN)
			err := l.Do(ctx, func(tx *ledger.Tx) error {
				_, err := tx.Save(ctx, rec, nil)
				return err
			})
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			saved = append(saved, rec)
			mu.Unlock()
		}
	}
	wg.Add(2)
	go write()
	go write()
	waitSaved := func(n int) {
		for {
			mu.Lock()
			got := len(saved)
			mu.Unlock()
			if got >= n {
				return
			}
			select {
			case err := <-errs:
				t.Fatal(err)
			case <-time.After(time.Millisecond):
			}
		}
	}
	waitSaved(50)
	first, err := l.RotateDataKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitSaved(100)
	second, err := l.RotateDataKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resealAll(t, l, 16)
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if first != 3 || second != 4 {
		t.Fatalf("keys %d and %d, want 3 and 4 (1 is the lookup key, 2 the first data key)", first, second)
	}
	var under map[int32]int
	rows, err := pool.Query(ctx, `SELECT sealed_by, count(*) FROM requests GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	under = map[int32]int{}
	for rows.Next() {
		var k *int32
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		if k == nil {
			t.Fatalf("%d requests not sealed", n)
		}
		under[*k] = n
	}
	if len(under) != 1 || under[second] != len(saved) {
		t.Fatalf("requests by data key %v; want all %d under %d", under, len(saved), second)
	}
	for _, rec := range saved {
		prior, _ := lookUp(t, l, rec.Key, "")
		if prior == nil || !bytes.Equal(prior.Response, rec.Response) {
			t.Fatalf("request %s: %+v, want its response", rec.Key.STAN, prior)
		}
	}
	kek, keys, err := l.KeyStatus(ctx)
	if err != nil || kek != ledgertest.KEK.ID() || len(keys) != 4 || !keys[3].Active || keys[3].ResealedAt == nil {
		t.Fatalf("status %s %+v %v", kek, keys, err)
	}
}

// TestRewrapUnderANewKEK: rewrapping moves every data key under the
// current KEK without changing what they seal; the earlier KEK is then
// no longer needed.
func TestRewrapUnderANewKEK(t *testing.T) {
	l, pool := ledgertest.New(t)
	ctx := context.Background()
	newCard(t, l, 100, 0)
	next := ledgertest.NewKEK(bytes.Repeat([]byte{2}, 32), "2222aaaa")
	both := twoKEKs{next, ledgertest.KEK}
	l2, err := ledger.Open(ctx, pool, both)
	if err != nil {
		t.Fatal(err)
	}
	n, err := l2.RewrapKeys(ctx)
	if err != nil || n != 2 {
		t.Fatalf("rewrapped %d (%v), want 2", n, err)
	}
	if err := ledger.CheckKEK(ctx, pool, ledgertest.KEK); !errors.Is(err, ledger.ErrKEK) {
		t.Fatalf("the earlier KEK alone after the rewrap: %v, want ErrKEK", err)
	}
	l3, err := ledger.Open(ctx, pool, next)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := l3.Card(ctx, pan, time.Time{}); err != nil || c.Cash != 100 {
		t.Fatalf("the card under the new KEK: %+v %v", c, err)
	}
}

// twoKEKs wraps under the first and unwraps under either.
type twoKEKs [2]ledger.KEK

func (k twoKEKs) ID() string { return k[0].ID() }

func (k twoKEKs) Wrap(key, aad []byte) ([]byte, error) { return k[0].Wrap(key, aad) }

func (k twoKEKs) Unwrap(id string, wrapped, aad []byte) ([]byte, error) {
	for _, kk := range k {
		if kk.ID() == id {
			return kk.Unwrap(id, wrapped, aad)
		}
	}
	return nil, fmt.Errorf("no KEK %s", id)
}

// BenchmarkSealing is what sealing adds to one request: its card's lookup
// hash, its fingerprint keyed, and its response sealed and opened again.
func BenchmarkSealing(b *testing.B) {
	l, _ := ledgertest.New(b)
	key := ledger.Key{Bank: "default", STAN: "000001"}.Digest()
	resp := response(pan)
	digest := sha256.Sum256([]byte(pan))
	b.ReportAllocs()
	for b.Loop() {
		hash, _, _, _ := l.SealPAN(pan)
		_ = l.Fingerprint(digest[:])
		sealed, _ := l.SealResponse(key, resp)
		if len(hash) != 32 || len(sealed) != len(resp)+28 {
			b.Fatal("sizes")
		}
	}
}

// TestResealGivesWay: the reseal job gives way to a transaction holding
// what it needs (a request's row, a table's lock) with ErrBusy rather than
// make requests wait, and finishes once it is let through, with the
// schema then refusing clear card data.
func TestResealGivesWay(t *testing.T) {
	ctx := context.Background()
	pool, _, reqs := legacyLedger(t, 3)
	if err := ledger.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	l := ledgertest.Open(t, pool)
	hold := func(sql string, args ...any) func() {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
		return func() { _ = tx.Rollback(ctx) }
	}
	// A request's row, as a reversal of it holds it.
	release := hold(`SELECT 1 FROM requests WHERE txn_key = $1 FOR UPDATE`, reqs[1].key.Digest())
	var err error
	for {
		var r ledger.Resealing
		if r, err = l.Reseal(ctx, 100); err != nil || r.Done {
			break
		}
	}
	release()
	if !errors.Is(err, ledger.ErrBusy) {
		t.Fatalf("Reseal with a request's row held: %v, want ErrBusy", err)
	}
	// A reader of the table (a dump, a reconciliation) when the schema
	// is to refuse clear card data: the job gives way at once.
	release = hold(`SELECT count(*) FROM cards`)
	for {
		var r ledger.Resealing
		if r, err = l.Reseal(ctx, 100); err != nil || r.Done {
			break
		}
	}
	if !errors.Is(err, ledger.ErrBusy) {
		t.Fatalf("Reseal with the cards table read meanwhile: %v, want ErrBusy", err)
	}
	if done, err := l.Sealed(ctx); err != nil || done {
		t.Fatalf("Sealed while the schema does not refuse clear data yet: %v %v", done, err)
	}
	release()
	if r, err := l.Reseal(ctx, 100); err != nil || !r.Done {
		t.Fatalf("Reseal let through: %+v %v", r, err)
	}
	if done, err := l.Sealed(ctx); err != nil || !done {
		t.Fatalf("Sealed: %v %v", done, err)
	}
}

// TestSwitchesStartingTogether: switches opening a new ledger at once
// agree on its first keys, and each starts.
func TestSwitchesStartingTogether(t *testing.T) {
	for range 5 {
		pool, conn := migratedTo(t, 11)
		conn.Release()
		ctx := context.Background()
		var wg sync.WaitGroup
		errs := make(chan error, 3)
		for range 3 {
			wg.Go(func() {
				_, err := ledger.Open(ctx, pool, ledgertest.KEK)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}
