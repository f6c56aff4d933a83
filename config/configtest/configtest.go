// Package configtest builds configs for tests.
package configtest

import (
	"encoding/json"
	"testing"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
)

// Snapshot is a validated config of one bank, with the shipped dialects,
// and extra keys and values (pairs of kvs), at revision 1.
func Snapshot(t testing.TB, bank *config.Bank, kvs ...string) *config.Snapshot {
	t.Helper()
	bankJSON, err := json.Marshal(bank)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]byte{"banks/" + bank.Code: bankJSON}
	for i := 0; i+1 < len(kvs); i += 2 {
		keys[kvs[i]] = []byte(kvs[i+1])
	}
	snap, err := config.Build(1, keys, iso.BuiltinSpecs())
	if err == nil {
		err = snap.Validate(nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return snap
}
