package config

import (
	"encoding/hex"
	"errors"
	"fmt"
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
	// Key is hex: 16 bytes for x9.19, 16 to 64 for hmac-sha256. It is
	// never logged and never shown by the admin API.
	Key string `json:"key"`
	// Overlap is how long after a key change requests under the previous
	// key are still accepted (and answered under it).
	Overlap Duration `json:"overlap,omitempty"`
}

// Validate reports everything wrong with m, or nil. It never repeats the key.
func (m *MAC) Validate() error {
	k, err := hex.DecodeString(m.Key)
	if err != nil {
		return errors.New("key must be hex")
	}
	switch m.Algorithm {
	case MACX919:
		if len(k) != 16 {
			return fmt.Errorf("an x9.19 key is 16 bytes (32 hex digits), not %d", len(k))
		}
	case MACHMACSHA256:
		if len(k) < 16 || len(k) > 64 {
			return fmt.Errorf("an hmac-sha256 key is 16 to 64 bytes, not %d", len(k))
		}
	default:
		return fmt.Errorf("algorithm %q must be %s or %s", m.Algorithm, MACX919, MACHMACSHA256)
	}
	if m.Overlap < 0 {
		return errors.New("overlap cannot be negative")
	}
	return nil
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
		m.Key = "(hidden)"
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
