package admin

import (
	"context"
	"errors"
	"net/http"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/internal/timer"
)

// Keys is what goldcard keys asks of the switch: the ledger's data keys,
// their rotation, and rewrapping after a KEK rotation.
type Keys interface {
	Status(ctx context.Context) (KeyStatus, error)
	Rotate(ctx context.Context) (KeyChange, error)
	Rewrap(ctx context.Context) (KeyRewrap, error)
}

// KeyStatus is GET /v1/keys: the KEK the switch wraps under and the data
// keys.
type KeyStatus struct {
	KEK  string           `json:"kek"`
	Keys []ledger.DataKey `json:"keys"`
	// Job is the timer's task that seals rows under the key in use, if
	// there is one: its state, attempts and last error.
	Job *timer.View `json:"job,omitempty"`
}

// KeyChange is POST /v1/keys/rotate's answer: the new data key, the
// config revision that names it, and each live switch's report of it.
type KeyChange struct {
	Key      int32 `json:"key"`
	Revision int64 `json:"revision,omitempty"`
	Switches any   `json:"switches"`
}

// KeyRewrap is POST /v1/keys/rewrap's answer: how many data keys and which
// banks' MAC keys were wrapped again under the current KEK.
type KeyRewrap struct {
	KEK      string   `json:"kek"`
	DataKeys int      `json:"data_keys"`
	Banks    []string `json:"banks"`
	Revision int64    `json:"revision,omitempty"`
}

// Refusal is a change of keys refused as things stand, with the HTTP
// status to answer (409, 503) and why; nothing was changed.
type Refusal struct {
	Status int
	Reason string
}

func (r *Refusal) Error() string { return r.Reason }

// keyError answers a change of keys that failed.
func (s *Server) keyError(w http.ResponseWriter, what string, err error) {
	var r *Refusal
	if errors.As(err, &r) {
		writeError(w, r.Status, r.Reason)
		return
	}
	s.internalError(w, what, err)
}

func (s *Server) showKeys(w http.ResponseWriter, r *http.Request) {
	st, err := s.keys.Status(r.Context())
	if err != nil {
		s.internalError(w, "reading the data keys", err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// rotateKey answers POST /v1/keys/rotate: a new data key, which every
// switch seals new rows under; earlier rows are sealed again behind.
func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request) {
	op, ok := s.needOperator(w, r)
	if !ok {
		return
	}
	ch, err := s.keys.Rotate(r.Context())
	if err != nil && ch.Key == 0 {
		s.keyError(w, "rotating the data key", err)
		return
	}
	s.log.Info("data key rotated", "operator", op, "key", ch.Key)
	if err != nil {
		// The key is made and in use here; the other switches did not all
		// say they follow it.
		writeJSON(w, http.StatusAccepted, map[string]any{"key": ch.Key, "revision": ch.Revision, "switches": ch.Switches, "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, ch)
}

// rewrapKeys answers POST /v1/keys/rewrap: every data key and MAC key
// wrapped again under the switch's current KEK.
func (s *Server) rewrapKeys(w http.ResponseWriter, r *http.Request) {
	op, ok := s.needOperator(w, r)
	if !ok {
		return
	}
	rw, err := s.keys.Rewrap(r.Context())
	if err != nil {
		s.keyError(w, "rewrapping keys", err)
		return
	}
	s.log.Info("keys rewrapped", "operator", op, "kek", rw.KEK, "data_keys", rw.DataKeys, "banks", rw.Banks)
	writeJSON(w, http.StatusOK, rw)
}
