package main

import (
	"encoding/hex"
	"sync"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
)

// macKeys holds each bank's MAC key and, for a while after a key change,
// the key before it: a bank that has not switched yet keeps working.
type macKeys struct {
	mu    sync.RWMutex
	banks map[string]*bankKeys
	now   func() time.Time
}

type bankKeys struct {
	cur, prev *iso.MACKey
	prevUntil time.Time
}

func newMACKeys(now func() time.Time) *macKeys {
	return &macKeys{banks: map[string]*bankKeys{}, now: now}
}

// update takes the keys of a new config. A bank whose key changed keeps
// its old one for the key's overlap.
func (k *macKeys) update(snap *config.Snapshot) []error {
	var errs []error
	next := map[string]*bankKeys{}
	k.mu.Lock()
	defer k.mu.Unlock()
	for code, b := range snap.Banks {
		if b.MAC == nil {
			continue
		}
		raw, err := hex.DecodeString(b.MAC.Key)
		var key *iso.MACKey
		if err == nil {
			key, err = iso.NewMACKey(b.MAC.Algorithm, raw)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		bk := &bankKeys{cur: key}
		if old := k.banks[code]; old != nil {
			switch {
			case old.cur.Equal(key):
				bk.prev, bk.prevUntil = old.prev, old.prevUntil
			default:
				bk.prev, bk.prevUntil = old.cur, k.now().Add(b.MAC.OverlapOrDefault())
			}
		}
		next[code] = bk
	}
	k.banks = next
	return errs
}

// verify checks a request of bank: it returns the key that verifies it
// (to answer under), or the current key and why it does not verify. A
// bank without MAC gets nil, nil.
func (k *macKeys) verify(bank string, body []byte, msg *iso8583.Message) (*iso.MACKey, error) {
	k.mu.RLock()
	bk := k.banks[bank]
	k.mu.RUnlock()
	if bk == nil {
		return nil, nil
	}
	err := bk.cur.Verify(body, msg)
	if err != nil && bk.prev != nil && k.now().Before(bk.prevUntil) && bk.prev.Verify(body, msg) == nil {
		return bk.prev, nil
	}
	return bk.cur, err
}
