package link

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"

	"github.com/goldcard/goldcard/iso"
)

// Dialects builds dialects from their specs, once per distinct spec.
type Dialects struct {
	mu    sync.Mutex              // guards built
	built map[string]*iso.Dialect // by name@digest
}

// NewDialects returns an empty cache.
func NewDialects() *Dialects {
	return &Dialects{built: map[string]*iso.Dialect{}}
}

func specDigest(spec []byte) string {
	sum := sha256.Sum256(spec)
	return hex.EncodeToString(sum[:8])
}

// Build returns the dialect name for spec, building it if not yet built.
func (c *Dialects) Build(name string, spec []byte) (*iso.Dialect, error) {
	key := name + "@" + specDigest(spec)
	c.mu.Lock()
	d, ok := c.built[key]
	c.mu.Unlock()
	if ok {
		return d, nil
	}
	d, err := iso.LoadDialect(name, spec)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.built[key] = d
	c.mu.Unlock()
	return d, nil
}

// Check is config's dialect check (config.Snapshot.Validate): it builds
// the spec.
func (c *Dialects) Check(name string, spec []byte) error {
	_, err := c.Build(name, spec)
	return err
}
