package config

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// TLS secures a bank's listener.
type TLS struct {
	// CertFile and KeyFile are the switch's certificate (chain) and key,
	// PEM; they are read again when they change on disk.
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
	// ClientCAFile, when set, asks every client for a certificate issued
	// by one of its CAs (mutual TLS).
	ClientCAFile string `json:"client_ca_file,omitempty"`
	// ClientSubjects and ClientSPKISHA256 bind the bank's identity: a
	// client certificate must carry one of these subject common names, or
	// a public key whose SubjectPublicKeyInfo has one of these SHA-256
	// digests (hex). Either may be empty.
	ClientSubjects   []string `json:"client_subjects,omitempty"`
	ClientSPKISHA256 []string `json:"client_spki_sha256,omitempty"`
	// MinVersion is "1.2" (the default) or "1.3".
	MinVersion string `json:"min_version,omitempty"`
}

// Validate reports everything wrong with t, or nil.
func (t *TLS) Validate() error {
	var errs []error
	if t.CertFile == "" || t.KeyFile == "" {
		errs = append(errs, errors.New("cert_file and key_file are required"))
	}
	if (len(t.ClientSubjects) > 0 || len(t.ClientSPKISHA256) > 0) && t.ClientCAFile == "" {
		errs = append(errs, errors.New("client_subjects and client_spki_sha256 need client_ca_file"))
	}
	for _, pin := range t.ClientSPKISHA256 {
		if b, err := hex.DecodeString(pin); err != nil || len(b) != 32 {
			errs = append(errs, fmt.Errorf("client_spki_sha256 %q must be 64 hex digits", pin))
		}
	}
	switch t.MinVersion {
	case "", "1.2", "1.3":
	default:
		errs = append(errs, fmt.Errorf("min_version %q must be 1.2 or 1.3", t.MinVersion))
	}
	return errors.Join(errs...)
}

// MAC algorithms.
const (
	MACX919       = "x9.19"       // ANSI X9.19 retail MAC, double-length 3DES key
	MACHMACSHA256 = "hmac-sha256" // HMAC-SHA-256, first 8 bytes
)

// DefaultMACOverlap is how long the previous key is still accepted after
// a key change.
const DefaultMACOverlap = 5 * time.Minute

// MAC is a bank's message authentication.
type MAC struct {
	Algorithm string `json:"algorithm"`
	// Key is the key in the clear, hex: 16 bytes for x9.19, 16 to 64 for
	// hmac-sha256. Only a config file or goldcard config put's input holds
	// it: what they write to the config center is KeyWrapped instead.
	Key string `json:"key,omitempty"`
	// KeyWrapped is the key wrapped under the switches' KEK, as
	// "<KEK check value>:<base64>", bound to the bank's code.
	KeyWrapped string `json:"key_wrapped,omitempty"`
	// Overlap is how long after a key change requests under the previous
	// key are still accepted (and answered under it).
	Overlap Duration `json:"overlap,omitempty"`

	// opened is KeyWrapped unwrapped (Snapshot.OpenKeys); never encoded.
	opened []byte
}

// KEK wraps and unwraps secrets under the switches' key-encryption key.
type KEK interface {
	// ID names the KEK that Wrap uses now (its check value).
	ID() string
	Wrap(key, aad []byte) ([]byte, error)
	Unwrap(kekID string, wrapped, aad []byte) ([]byte, error)
}

// Validate reports everything wrong with m, or nil. It never repeats the key.
func (m *MAC) Validate() error {
	var n int
	switch {
	case m.Key != "" && m.KeyWrapped != "":
		return errors.New("give key or key_wrapped, not both")
	case m.KeyWrapped != "":
		if _, _, err := splitWrapped(m.KeyWrapped); err != nil {
			return err
		}
		n = -1 // its length is checked once it is opened
		if m.opened != nil {
			n = len(m.opened)
		}
	default:
		k, err := hex.DecodeString(m.Key)
		if err != nil || m.Key == "" {
			return errors.New("key must be hex")
		}
		n = len(k)
	}
	switch m.Algorithm {
	case MACX919:
		if n >= 0 && n != 16 {
			return fmt.Errorf("an x9.19 key is 16 bytes (32 hex digits), not %d", n)
		}
	case MACHMACSHA256:
		if n >= 0 && (n < 16 || n > 64) {
			return fmt.Errorf("an hmac-sha256 key is 16 to 64 bytes, not %d", n)
		}
	default:
		return fmt.Errorf("algorithm %q must be %s or %s", m.Algorithm, MACX919, MACHMACSHA256)
	}
	if m.Overlap < 0 {
		return errors.New("overlap cannot be negative")
	}
	return nil
}

// KeyBytes is the MAC key: the clear key of a config file, or the wrapped
// key once opened.
func (m *MAC) KeyBytes() ([]byte, error) {
	if m.KeyWrapped != "" {
		if m.opened == nil {
			return nil, errors.New("the key is wrapped and this switch has not opened it")
		}
		return m.opened, nil
	}
	k, err := hex.DecodeString(m.Key)
	if err != nil {
		return nil, errors.New("the configured key is not hex")
	}
	return k, nil
}

func splitWrapped(w string) (kekID string, wrapped []byte, err error) {
	kekID, b64, ok := strings.Cut(w, ":")
	if ok {
		wrapped, err = base64.StdEncoding.DecodeString(b64)
	}
	if !ok || err != nil || len(kekID) != 8 || len(wrapped) == 0 {
		return "", nil, errors.New("key_wrapped must be <KEK check value>:<base64>, as goldcard config put writes it")
	}
	return kekID, wrapped, nil
}

func macAAD(bank string) []byte { return []byte("goldcard/bank/" + bank + "/mac") }

// wrapMAC wraps a bank's MAC key under the current KEK.
func wrapMAC(k KEK, bank string, key []byte) (string, error) {
	w, err := k.Wrap(key, macAAD(bank))
	if err != nil {
		return "", fmt.Errorf("wrapping bank %s's MAC key: %w", bank, err)
	}
	return k.ID() + ":" + base64.StdEncoding.EncodeToString(w), nil
}

// openMAC unwraps a bank's wrapped MAC key.
func openMAC(k KEK, bank, wrappedKey string) ([]byte, error) {
	id, w, err := splitWrapped(wrappedKey)
	if err != nil {
		return nil, fmt.Errorf("bank %s: mac: %w", bank, err)
	}
	if k == nil {
		return nil, fmt.Errorf("bank %s: its MAC key is wrapped under KEK %s, and this switch holds no KEK", bank, id)
	}
	key, err := k.Unwrap(id, w, macAAD(bank))
	if err != nil {
		return nil, fmt.Errorf("bank %s: its MAC key does not open: %w", bank, err)
	}
	return key, nil
}

// OpenKeys unwraps the banks' wrapped MAC keys for use, and checks them as
// Validate checks a clear key; a key that does not open under k, or one
// in the clear (the config center never holds one), is an error naming
// its bank.
func (s *Snapshot) OpenKeys(k KEK) error {
	var errs []error
	for _, code := range s.BankCodes() {
		m := s.Banks[code].MAC
		if m == nil {
			continue
		}
		if m.KeyWrapped == "" {
			errs = append(errs, fmt.Errorf("bank %s: mac: its key is in the clear in the config center: write it with goldcard config put, which wraps it", code))
			continue
		}
		key, err := openMAC(k, code, m.KeyWrapped)
		if err == nil {
			m.opened = key
			err = m.Validate()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("bank %s: mac: %w", code, err))
		}
	}
	return errors.Join(errs...)
}

// WrapKeys rewrites the config values of banks among kvs whose MAC key is
// in the clear (and, with rewrap, wrapped under a KEK other than k's
// current one) with the key wrapped under k's current KEK; it returns the
// keys it rewrote. What goldcard config put and a switch seeding the
// config center write goes through it, so that the config center never
// holds a MAC key in the clear.
func WrapKeys(kvs map[string][]byte, k KEK, rewrap bool) ([]string, error) {
	var changed []string
	for _, key := range sortedKeys(kvs) {
		kind, name, _ := strings.Cut(key, "/")
		if kind != "banks" {
			continue
		}
		// Only the MAC key changes: the value is rewritten field by field,
		// so that what it leaves to the defaults stays left to them.
		var bank map[string]json.RawMessage
		var m MAC
		if err := oneNameEach(kvs[key]); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		if json.Unmarshal(kvs[key], &bank) != nil {
			continue // Build reports what does not decode
		}
		// Go's JSON decoding matches names in any case: so does this.
		field := foldKey(bank, "mac")
		if field == "" || DecodeStrict(bank[field], &m) != nil {
			continue
		}
		var clear []byte
		switch {
		case m.Key != "" && m.KeyWrapped == "":
			raw, err := hex.DecodeString(m.Key)
			if err != nil {
				continue // Validate says so
			}
			clear = raw
		case m.KeyWrapped != "" && rewrap:
			id, _, err := splitWrapped(m.KeyWrapped)
			if err != nil || (k != nil && id == k.ID()) {
				continue
			}
			if clear, err = openMAC(k, name, m.KeyWrapped); err != nil {
				return nil, err
			}
		default:
			continue
		}
		if k == nil {
			return nil, fmt.Errorf("bank %s: a MAC key is written to the config center wrapped under the KEK: give --kek-file FILE or $GOLDCARD_KEK", name)
		}
		w, err := wrapMAC(k, name, clear)
		if err != nil {
			return nil, err
		}
		m.Key, m.KeyWrapped = "", w
		delete(bank, field)
		if bank["mac"], err = json.Marshal(&m); err != nil {
			return nil, err
		}
		v, err := json.Marshal(bank)
		if err != nil {
			return nil, err
		}
		kvs[key] = v
		changed = append(changed, key)
	}
	return changed, nil
}

// WrappedUnder is the check value of the KEK a bank's value has its MAC
// key wrapped under, or "" (another key, no MAC, a clear key).
func WrappedUnder(key string, value []byte) string {
	if kind, _, _ := strings.Cut(key, "/"); kind != "banks" {
		return ""
	}
	var b Bank
	if DecodeStrict(value, &b) != nil || b.MAC == nil {
		return ""
	}
	id, _, err := splitWrapped(b.MAC.KeyWrapped)
	if err != nil {
		return ""
	}
	return id
}

// oneNameEach refuses a bank's value that names a setting twice in
// different cases ("mac" and "MAC"), at its top or in its mac: Go's JSON
// decoding would take whichever comes last, and what is wrapped or hidden
// must be what is used.
func oneNameEach(value []byte) error {
	var bank map[string]json.RawMessage
	if json.Unmarshal(value, &bank) != nil {
		return nil // DecodeStrict says what is wrong
	}
	objects := []map[string]json.RawMessage{bank}
	var mac map[string]json.RawMessage
	if f := foldKey(bank, "mac"); f != "" && json.Unmarshal(bank[f], &mac) == nil {
		objects = append(objects, mac)
	}
	for _, o := range objects {
		seen := map[string]string{}
		for k := range o {
			if other, dup := seen[strings.ToLower(k)]; dup {
				return fmt.Errorf("%q and %q name one setting: give it once", other, k)
			}
			seen[strings.ToLower(k)] = k
		}
	}
	return nil
}

// foldKey is the name in m that equals name but for case (as Go's JSON
// decoding matches them), or "".
func foldKey[V any](m map[string]V, name string) string {
	for k := range m {
		if strings.EqualFold(k, name) {
			return k
		}
	}
	return ""
}

// Redact is a config value as shown to people: a bank's MAC key, clear or
// wrapped, is replaced by a note of how it is kept.
func Redact(key string, value []byte) []byte {
	if kind, _, _ := strings.Cut(key, "/"); kind != "banks" {
		return value
	}
	var b map[string]any
	if json.Unmarshal(value, &b) != nil {
		return []byte(`"(not JSON: hidden)"`)
	}
	m, ok := b[foldKey(b, "mac")].(map[string]any)
	if !ok {
		return value
	}
	if f := foldKey(m, "key_wrapped"); f != "" {
		w, _ := m[f].(string)
		id, _, _ := strings.Cut(w, ":")
		m[f] = "(wrapped under KEK " + id + ")"
	}
	if f := foldKey(m, "key"); f != "" {
		m[f] = "(hidden)"
	}
	out, err := json.Marshal(b)
	if err != nil {
		return value
	}
	return out
}

// OverlapOrDefault is Overlap, or DefaultMACOverlap when unset.
func (m *MAC) OverlapOrDefault() time.Duration {
	if m.Overlap == 0 {
		return DefaultMACOverlap
	}
	return m.Overlap.D()
}

// Redacted is a copy of b without secrets, for showing.
func (b *Bank) Redacted() *Bank {
	c := *b
	if b.MAC != nil {
		m := *b.MAC
		m.opened = nil
		if m.Key != "" {
			m.Key = "(hidden)"
		}
		if id, _, err := splitWrapped(m.KeyWrapped); err == nil {
			m.KeyWrapped = "(wrapped under KEK " + id + ")"
		}
		c.MAC = &m
	}
	return &c
}

// sameListenerTLS reports whether two banks sharing a listener agree on
// what the handshake needs; their identity bindings may differ.
func sameListenerTLS(a, b *TLS) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.CertFile == b.CertFile && a.KeyFile == b.KeyFile && a.ClientCAFile == b.ClientCAFile && a.MinVersion == b.MinVersion
}
