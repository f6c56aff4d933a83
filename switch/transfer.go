package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/goldcard/goldcard/fund"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
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
	rd := s.proc.redeemer
	if rd == nil {
		writeError(w, http.StatusServiceUnavailable, "this switch has no fund company configured")
		return
	}
	c, ok := s.cardFromPath(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), transferOutTimeout)
	defer cancel()
	o, err := s.redeemByHand(ctx, c, req.Amount)
	switch {
	case errors.Is(err, ledger.ErrInsufficientFunds):
		writeError(w, http.StatusConflict, "the fund balance does not cover the amount")
		return
	case errors.Is(err, ledger.ErrQuotaExceeded):
		writeError(w, http.StatusConflict, "the amount is over what is left of today's instant-redemption quota")
		return
	case errors.Is(err, errUnavailable):
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	case err != nil:
		s.internalError(w, "transferring out", err)
		return
	}
	s.log.Info("transfer out", "card", c.Ref, "pan", iso.MaskPAN(c.PAN), "amount", req.Amount, "order", o.ID, "state", o.State)
	switch o.State {
	case ledger.OrderConfirmed:
		writeJSON(w, http.StatusOK, viewOrder(*o))
	case ledger.OrderPending:
		writeJSON(w, http.StatusAccepted, viewOrder(*o))
	default:
		writeJSON(w, http.StatusBadGateway, map[string]any{"error": "the fund company refused the redemption", "order": viewOrder(*o)})
	}
}

// redeemByHand places, sends and settles one transfer-out order.
func (s *Server) redeemByHand(ctx context.Context, card *ledger.Card, amount int64) (*ledger.Order, error) {
	rd := s.proc.redeemer
	k, lctx, release, err := rd.lock(ctx, card.ID)
	if err != nil {
		return nil, err
	}
	defer release()
	id := newOrderID()
	if err := rd.followUp(lctx, id); err != nil {
		return nil, err
	}
	lim := s.cfg.Load().Limits
	day := fund.Day(s.proc.now())
	err = s.ledger.Do(lctx, func(tx *ledger.Tx) error {
		c, err := tx.LockCardByID(lctx, card.ID, day)
		if err != nil {
			return err
		}
		if err := tx.Fence(lctx, c.ID, k.Token()); err != nil {
			return err
		}
		return tx.StartRedemption(lctx, c, ledger.NewRedemption{
			ID: id, Amount: amount, Purpose: ledger.PurposeTransferOut, Day: day, Quota: lim.RedemptionQuota, Fence: k.Token(),
		})
	})
	if err != nil {
		return nil, err
	}
	st, err := rd.redeem(lctx, "admin", id, card, amount, ledger.PurposeTransferOut)
	if err == nil && st.State != fund.Pending {
		if err := fund.Settle(lctx, s.ledger, ledger.Order{ID: id, CardID: card.ID}, st); err != nil {
			return nil, fmt.Errorf("recording the fund company's answer: %w", err)
		}
	}
	return s.ledger.Order(context.WithoutCancel(ctx), id)
}
