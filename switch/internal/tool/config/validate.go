package configtool

import (
	"encoding/json"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
)

// validate checks a whole config as a switch would before applying.
func validate(kvs map[string][]byte) error {
	snap, err := config.Build(0, kvs, builtinDialects())
	if err != nil {
		return err
	}
	return snap.Validate(checkDialect)
}

// builtinDialects are the shipped dialects' specs, which a config may
// name without defining.
func builtinDialects() map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for _, name := range iso.BuiltinNames() {
		if b, err := iso.BuiltinJSON(name); err == nil {
			out[name] = b
		}
	}
	return out
}

// checkDialect is config's dialect check: a dialect's spec must build.
func checkDialect(name string, spec []byte) error {
	_, err := iso.LoadDialect(name, spec)
	return err
}
