package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/internal/issuer"
)

// transferOutTimeout bounds a transfer out by hand, fund company included.
const transferOutTimeout = 30 * time.Second

// transferOut moves money from a card's fund to its cash by hand: the same
// order, quota and lock as a shortfall. It answers 200 with the order once
// the fund company confirms, 202 while it is pending, 502 if refused.
func (s *Server) transferOut(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Amount int64 `json:"amount"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.Amount <= 0 {
		writeError(w, http.StatusBadRequest, "amount must be a positive number of minor units")
		return
	}
	if !s.issuer.Redeems() {
		writeError(w, http.StatusServiceUnavailable, issuer.ErrNoFund.Error())
		return
	}
	c, ok := s.cardFromPath(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), transferOutTimeout)
	defer cancel()
	o, err := s.issuer.TransferOut(ctx, c, req.Amount, s.cfg.Load().Limits)
	switch {
	case errors.Is(err, ledger.ErrInsufficientFunds):
		writeError(w, http.StatusConflict, "the fund balance does not cover the amount")
		return
	case errors.Is(err, ledger.ErrQuotaExceeded):
		writeError(w, http.StatusConflict, "the amount is over what is left of today's instant-redemption quota")
		return
	case errors.Is(err, issuer.ErrNoFund), errors.Is(err, issuer.ErrUnavailable):
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	case err != nil:
		s.internalError(w, "transferring out", err)
		return
	}
	s.log.Info("transfer out", "card", c.Ref, "pan", c.Masked, "amount", req.Amount, "order", o.ID, "state", o.State)
	switch o.State {
	case ledger.OrderConfirmed:
		writeJSON(w, http.StatusOK, viewOrder(*o))
	case ledger.OrderPending:
		writeJSON(w, http.StatusAccepted, viewOrder(*o))
	default:
		writeJSON(w, http.StatusBadGateway, map[string]any{"error": "the fund company refused the redemption", "order": viewOrder(*o)})
	}
}
