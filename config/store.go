package config

import "sync/atomic"

// Store holds the current snapshot. Load is safe from any goroutine.
type Store struct {
	cur atomic.Pointer[Snapshot]
}

// NewStore returns a store holding s.
func NewStore(s *Snapshot) *Store {
	st := &Store{}
	st.cur.Store(s)
	return st
}

// Load returns the current snapshot. Callers read one snapshot per message
// and never modify it.
func (s *Store) Load() *Snapshot { return s.cur.Load() }

// Swap replaces the current snapshot with next, which must be valid.
func (s *Store) Swap(next *Snapshot) { s.cur.Store(next) }
