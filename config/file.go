package config

import (
	"encoding/json"
	"errors"
	"fmt"

	"sigs.k8s.io/yaml"
)

// file is the shape of a config file: every section of the model, banks
// and dialects by name, calendars by year.
type file struct {
	Banks    map[string]json.RawMessage `json:"banks"`
	Dialects map[string]json.RawMessage `json:"dialects"`
	Limits   json.RawMessage            `json:"limits"`
	Fund     json.RawMessage            `json:"fund"`
	Sweep    json.RawMessage            `json:"sweep"`
	Calendar map[string]json.RawMessage `json:"calendar"`

	ReconFormats map[string]json.RawMessage `json:"recon_formats"`
}

// ParseFile reads a config file (YAML or JSON) into config keys and their
// JSON values, checking each value on its own.
func ParseFile(data []byte) (map[string][]byte, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	var f file
	if err := DecodeStrict(js, &f); err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	kvs := map[string][]byte{}
	add := func(key string, v json.RawMessage) {
		if len(v) > 0 && string(v) != "null" {
			kvs[key] = v
		}
	}
	for code, v := range f.Banks {
		add("banks/"+code, v)
	}
	for name, v := range f.Dialects {
		add("dialects/"+name, v)
	}
	add(KeyLimits, f.Limits)
	add(KeyFund, f.Fund)
	add(KeySweep, f.Sweep)
	for year, v := range f.Calendar {
		add("calendar/"+year, v)
	}
	for name, v := range f.ReconFormats {
		add("recon_formats/"+name, v)
	}
	var errs []error
	for _, key := range sortedKeys(kvs) {
		if _, err := DecodeValue(key, kvs[key]); err != nil {
			errs = append(errs, err)
		}
	}
	return kvs, errors.Join(errs...)
}

// Values returns a snapshot's sections as config keys and JSON values,
// dialects excepted: the seed of an empty config center.
func (s *Snapshot) Values() map[string][]byte {
	kvs := map[string][]byte{}
	put := func(key string, v any) {
		b, err := json.Marshal(v)
		if err == nil {
			kvs[key] = b
		}
	}
	for code, b := range s.Banks {
		put("banks/"+code, b)
	}
	put(KeyLimits, s.Limits)
	put(KeyFund, s.Fund)
	put(KeySweep, s.Sweep)
	for year, c := range s.Calendar {
		put(fmt.Sprintf("calendar/%d", year), c)
	}
	builtin := BuiltinReconFormats()
	for name, f := range s.ReconFormats {
		if _, ok := builtin[name]; !ok {
			put("recon_formats/"+name, f)
		}
	}
	return kvs
}
