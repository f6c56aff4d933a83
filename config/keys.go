package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Section keys, relative to the config prefix. Banks, dialects and
// calendar years have a key each: banks/<code>, dialects/<name>,
// calendar/<year>.
const (
	KeyLimits = "limits"
	KeyFund   = "fund"
	KeySweep  = "sweep"
	KeyKeys   = "keys"
)

// ErrUnknownKey is a key outside the config model.
var ErrUnknownKey = errors.New("config: unknown key")

// DecodeValue decodes the value of one key strictly (unknown fields are
// errors) over the defaults, and checks what can be checked of it alone.
// It returns the decoded value: *Bank, json.RawMessage (a dialect),
// Limits, Fund, Sweep, Keys, ReconFormat or Calendar.
func DecodeValue(key string, value []byte) (any, error) {
	kind, name, err := splitKey(key)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "banks":
		b := NewBank()
		if err := DecodeStrict(value, b); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		if err := oneNameEach(value); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		if b.Code == "" {
			b.Code = name
		}
		if b.Code != name {
			return nil, fmt.Errorf("%s: code %q differs from the key's %q", key, b.Code, name)
		}
		return b, b.Validate()
	case "dialects":
		if !json.Valid(value) {
			return nil, fmt.Errorf("%s: not JSON", key)
		}
		return json.RawMessage(bytes.Clone(value)), nil
	case KeyLimits:
		l := DefaultLimits()
		if err := DecodeStrict(value, &l); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		return l, l.Validate()
	case KeyFund:
		f := DefaultFund()
		if err := DecodeStrict(value, &f); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		return f, f.Validate()
	case KeySweep:
		s := DefaultSweep()
		if err := DecodeStrict(value, &s); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		return s, s.Validate()
	case "recon_formats":
		var f ReconFormat
		if err := DecodeStrict(value, &f); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		if err := f.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		return f, nil
	case KeyKeys:
		var k Keys
		if err := DecodeStrict(value, &k); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		if k.DataKey < 0 {
			return nil, fmt.Errorf("%s: data_key cannot be negative", key)
		}
		return k, nil
	case "calendar":
		var c Calendar
		if err := DecodeStrict(value, &c); err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		year, _ := strconv.Atoi(name)
		return c, c.Validate(year)
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownKey, key)
}

// splitKey checks a key's form and returns its kind and name.
func splitKey(key string) (kind, name string, err error) {
	kind, name, hasName := strings.Cut(key, "/")
	switch kind {
	case KeyLimits, KeyFund, KeySweep, KeyKeys:
		if !hasName {
			return kind, "", nil
		}
	case "banks":
		if hasName && codePattern.MatchString(name) {
			return kind, name, nil
		}
	case "dialects", "recon_formats":
		if hasName && codePattern.MatchString(name) {
			return kind, name, nil
		}
	case "calendar":
		if y, err := strconv.Atoi(name); hasName && digits(name) && err == nil && y >= 2000 && y <= 2200 {
			return kind, name, nil
		}
	}
	return "", "", fmt.Errorf("%w %q (want banks/<code>, dialects/<name>, recon_formats/<name>, limits, fund, sweep, keys or calendar/<year>)", ErrUnknownKey, key)
}

// Build makes a snapshot at revision rev from config keys and their
// values. Sections without a key keep their defaults; dialects start from
// builtin, which keys may add to or replace. Each value is decoded and
// checked; the whole is not validated (see Snapshot.Validate).
func Build(rev int64, kvs map[string][]byte, builtin map[string]json.RawMessage) (*Snapshot, error) {
	s := &Snapshot{
		Revision: rev,
		Banks:    map[string]*Bank{},
		Dialects: map[string]json.RawMessage{},
		Limits:   DefaultLimits(),
		Fund:     DefaultFund(),
		Sweep:    DefaultSweep(),
		Calendar: map[int]Calendar{},

		ReconFormats: BuiltinReconFormats(),
	}
	for name, spec := range builtin {
		s.Dialects[name] = spec
	}
	var errs []error
	for _, key := range sortedKeys(kvs) {
		v, err := DecodeValue(key, kvs[key])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_, name, _ := splitKey(key)
		switch v := v.(type) {
		case *Bank:
			s.Banks[name] = v
		case json.RawMessage:
			s.Dialects[name] = v
		case Limits:
			s.Limits = v
		case Fund:
			s.Fund = v
		case Sweep:
			s.Sweep = v
		case Keys:
			s.Keys = v
		case ReconFormat:
			s.ReconFormats[name] = v
		case Calendar:
			year, _ := strconv.Atoi(name)
			s.Calendar[year] = v
		}
	}
	return s, errors.Join(errs...)
}

// DecodeStrict decodes one JSON value into v, refusing unknown fields and
// trailing data.
func DecodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}
