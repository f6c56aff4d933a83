package admin

import (
	"errors"
	"net/http"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/goldcard/goldcard/ledger"
)

// PasswordCost is the bcrypt cost of cardholders' passwords: about a
// quarter of a second a guess on one core.
const PasswordCost = 12

// Passwords are 8 to 72 bytes (bcrypt reads no more than 72).
const (
	minPassword = 8
	maxPassword = 72
)

// setCardPassword answers PUT /v1/cards/{id}/password {"password"}: an
// operator gives the cardholder a password to sign in to the card's pages
// with, which they must change at their next sign-in; a lock on signing in
// is lifted. Only its hash is kept, and neither is ever logged or shown.
func (s *Server) setCardPassword(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Password string `json:"password"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	op, ok := s.needOperator(w, r)
	if !ok {
		return
	}
	if n := len(req.Password); n < minPassword || n > maxPassword || !utf8.ValidString(req.Password) {
		writeError(w, http.StatusBadRequest, "password must be 8 to 72 bytes of UTF-8")
		return
	}
	c, ok := s.cardFromPath(w, r)
	if !ok {
		return
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(req.Password), PasswordCost)
	if err != nil {
		s.internalError(w, "hashing a password", err)
		return
	}
	err = s.ledger.SetCardPassword(r.Context(), c.ID, string(hash), op)
	switch {
	case errors.Is(err, ledger.ErrUnknownCard):
		writeError(w, http.StatusNotFound, noSuchCard)
	case err != nil:
		s.internalError(w, "setting a card's password", err)
	default:
		s.log.Info("card password set", "card", c.Ref, "pan", c.Masked, "operator", op)
		writeJSON(w, http.StatusOK, map[string]any{"id": c.Ref, "must_change": true})
	}
}
