package link

import (
	"fmt"
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
	conf      config.MAC // what cur was made from
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
		key, err := macKey(b.MAC)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		bk := &bankKeys{conf: *b.MAC, cur: key}
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

// verify checks a request of bank under the config it runs with: it
// returns the key that verifies it, to answer under, or why it does not
// verify. A bank without MAC gets nil, nil. The keys the config names are
// used even before update has seen it, so a bank that has just turned MAC
// on is never served without.
func (k *macKeys) verify(bank *config.Bank, body []byte, msg *iso8583.Message) (*iso.MACKey, error) {
	if bank.MAC == nil {
		return nil, nil
	}
	k.mu.RLock()
	bk := k.banks[bank.Code]
	k.mu.RUnlock()
	var cur *iso.MACKey
	if bk != nil && bk.conf.Algorithm == bank.MAC.Algorithm && bk.conf.Key == bank.MAC.Key && bk.conf.KeyWrapped == bank.MAC.KeyWrapped {
		cur = bk.cur
	} else {
		// The config changed and update has not seen it yet.
		var err error
		if cur, err = macKey(bank.MAC); err != nil {
			return nil, err
		}
	}
	err := cur.Verify(body, msg)
	if err == nil {
		return cur, nil
	}
	if bk != nil && bk.prev != nil && !bk.prev.Equal(cur) && k.now().Before(bk.prevUntil) && bk.prev.Verify(body, msg) == nil {
		return bk.prev, nil
	}
	return nil, err
}

// macKey is the key of a bank's MAC settings.
func macKey(m *config.MAC) (*iso.MACKey, error) {
	raw, err := m.KeyBytes()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", iso.ErrNoMAC, err)
	}
	key, err := iso.NewMACKey(m.Algorithm, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", iso.ErrNoMAC, err)
	}
	return key, nil
}
