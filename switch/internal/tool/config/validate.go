package configtool

import (
	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
)

// validate checks a whole config as a switch would before applying.
func validate(kvs map[string][]byte) error {
	snap, err := config.Build(0, kvs, iso.BuiltinSpecs())
	if err != nil {
		return err
	}
	return snap.Validate(checkDialect)
}

// checkDialect is config's dialect check: a dialect's spec must build.
func checkDialect(name string, spec []byte) error {
	_, err := iso.LoadDialect(name, spec)
	return err
}
