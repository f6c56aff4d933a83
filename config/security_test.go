package config_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/goldcard/goldcard/config"
)

// fakeKEK is a KEK for tests: AES-256-GCM under key, named id.
type fakeKEK struct {
	id   string
	aead cipher.AEAD
}

func newKEK(b byte, id string) fakeKEK {
	block, _ := aes.NewCipher(bytes.Repeat([]byte{b}, 32))
	aead, _ := cipher.NewGCMWithRandomNonce(block)
	return fakeKEK{id, aead}
}

func (k fakeKEK) ID() string                           { return k.id }
func (k fakeKEK) Wrap(key, aad []byte) ([]byte, error) { return k.aead.Seal(nil, nil, key, aad), nil }
func (k fakeKEK) Unwrap(id string, w, aad []byte) ([]byte, error) {
	if id != k.id {
		return nil, fmt.Errorf("no KEK %s", id)
	}
	return k.aead.Open(nil, nil, w, aad)
}

const clearKey = "00112233445566778899aabbccddeeff"

// TestMACKeysAreWrapped: a bank's MAC key given in the clear is written
// wrapped, with the bank's other settings as they were given; the switch
// opens it, a KEK it was not wrapped under does not, and it is never shown.
func TestMACKeysAreWrapped(t *testing.T) {
	k := newKEK(1, "11111111")
	kvs := map[string][]byte{
		"banks/acme": []byte(`{"listen":"127.0.0.1:9000","dialect":"iso87-ascii","mac":{"algorithm":"x9.19","key":"` + clearKey + `"}}`),
		"limits":     []byte(`{}`),
	}
	if _, err := config.WrapKeys(map[string][]byte{"banks/acme": kvs["banks/acme"]}, nil, false); err == nil {
		t.Fatal("a clear key was wrapped without a KEK")
	}
	changed, err := config.WrapKeys(kvs, k, false)
	if err != nil || len(changed) != 1 || changed[0] != "banks/acme" {
		t.Fatalf("WrapKeys: %v %v", changed, err)
	}
	v := string(kvs["banks/acme"])
	if strings.Contains(v, clearKey) || !strings.Contains(v, `"key_wrapped":"11111111:`) || strings.Contains(v, "max_in_flight") {
		t.Fatalf("wrapped value %s: want the key wrapped and nothing else added", v)
	}
	if again, _ := config.WrapKeys(kvs, k, false); len(again) != 0 {
		t.Fatalf("a wrapped key was wrapped again: %v", again)
	}
	snap, err := config.Build(1, kvs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snap.Banks["acme"].MAC.KeyBytes(); err == nil {
		t.Fatal("a wrapped key was used before it was opened")
	}
	if err := snap.OpenKeys(newKEK(2, "22222222")); err == nil || !strings.Contains(err.Error(), "bank acme") {
		t.Fatalf("OpenKeys under another KEK: %v, want an error naming the bank", err)
	}
	if err := snap.OpenKeys(k); err != nil {
		t.Fatal(err)
	}
	if key, err := snap.Banks["acme"].MAC.KeyBytes(); err != nil || fmt.Sprintf("%x", key) != clearKey {
		t.Fatalf("opened key %x %v", key, err)
	}
	shown, _ := json.Marshal(snap.Banks["acme"].Redacted())
	for _, s := range [][]byte{shown, config.Redact("banks/acme", kvs["banks/acme"])} {
		if bytes.Contains(s, []byte(clearKey)) || bytes.Contains(s, []byte(strings.SplitN(v, `11111111:`, 2)[1][:20])) {
			t.Fatalf("shown: %s", s)
		}
	}
	// As encoded (what etcd holds), the opened key is never there.
	if b := mustJSON(snap.Banks["acme"]); bytes.Contains(b, []byte(clearKey)) {
		t.Fatalf("encoded: %s", b)
	}
	// Moved to another bank, the wrapped key does not open: it is bound
	// to its bank.
	kvs["banks/other"] = bytes.Replace(kvs["banks/acme"], []byte("127.0.0.1:9000"), []byte("127.0.0.1:9001"), 1)
	moved, err := config.Build(2, kvs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := moved.OpenKeys(k); err == nil || !strings.Contains(err.Error(), "bank other") {
		t.Fatalf("a key moved to another bank: %v", err)
	}
	// Rewrapped under a new KEK, given beside the old one.
	next := newKEK(3, "33333333")
	delete(kvs, "banks/other")
	changed, err = config.WrapKeys(kvs, twoKEKs{next, k}, true)
	if err != nil || len(changed) != 1 || !strings.Contains(string(kvs["banks/acme"]), `"33333333:`) {
		t.Fatalf("rewrap: %v %v %s", changed, err, kvs["banks/acme"])
	}
}

// TestMACKeyInAnyCase: Go's JSON decoding takes "MAC" and "Key" for "mac"
// and "key", so wrapping and hiding them do too.
func TestMACKeyInAnyCase(t *testing.T) {
	kvs := map[string][]byte{"banks/acme": []byte(`{"listen":"127.0.0.1:9000","MAC":{"algorithm":"x9.19","Key":"` + clearKey + `"}}`)}
	if shown := config.Redact("banks/acme", kvs["banks/acme"]); bytes.Contains(shown, []byte(clearKey)) {
		t.Fatalf("shown: %s", shown)
	}
	if changed, err := config.WrapKeys(kvs, newKEK(1, "11111111"), false); err != nil || len(changed) != 1 || bytes.Contains(kvs["banks/acme"], []byte(clearKey)) {
		t.Fatalf("WrapKeys: %v %v %s", changed, err, kvs["banks/acme"])
	}
	twice := map[string][]byte{"banks/acme": []byte(`{"listen":"127.0.0.1:9000","mac":{"algorithm":"x9.19","key_wrapped":"11111111:AAAA"},"MAC":{"algorithm":"x9.19","key":"` + clearKey + `"}}`)}
	if _, err := config.WrapKeys(twice, newKEK(1, "11111111"), false); err == nil || !strings.Contains(err.Error(), "name one setting") {
		t.Fatalf("WrapKeys of a value naming mac twice: %v", err)
	}
	if _, err := config.Build(1, twice, nil); err == nil {
		t.Fatal("a value naming mac twice was taken")
	}
	snap, err := config.Build(1, map[string][]byte{"banks/acme": []byte(`{"listen":"127.0.0.1:9000","mac":{"algorithm":"x9.19","key":"` + clearKey + `"}}`)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.OpenKeys(newKEK(1, "11111111")); err == nil || !strings.Contains(err.Error(), "in the clear") {
		t.Fatalf("a clear key from the config center: %v, want it refused", err)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func TestMACValidate(t *testing.T) {
	for _, tc := range []struct {
		m   config.MAC
		err string
	}{
		{config.MAC{Algorithm: "x9.19", Key: clearKey}, ""},
		{config.MAC{Algorithm: "x9.19", KeyWrapped: "11111111:AAAA"}, ""},
		{config.MAC{Algorithm: "x9.19", Key: clearKey, KeyWrapped: "11111111:AAAA"}, "not both"},
		{config.MAC{Algorithm: "x9.19", KeyWrapped: "AAAA"}, "key_wrapped must be"},
		{config.MAC{Algorithm: "x9.19"}, "key must be hex"},
		{config.MAC{Algorithm: "x9.19", Key: clearKey[:30]}, "not 15"},
	} {
		err := tc.m.Validate()
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: %v, want %q", tc.m, err, tc.err)
		}
	}
}

type twoKEKs [2]config.KEK

func (k twoKEKs) ID() string                           { return k[0].ID() }
func (k twoKEKs) Wrap(key, aad []byte) ([]byte, error) { return k[0].Wrap(key, aad) }
func (k twoKEKs) Unwrap(id string, w, aad []byte) ([]byte, error) {
	for _, kk := range k {
		if kk.ID() == id {
			return kk.Unwrap(id, w, aad)
		}
	}
	return nil, errors.New("no such KEK")
}
