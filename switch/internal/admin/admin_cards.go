package admin

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/fund"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
)

// noSuchCard is the answer to a path naming no card. It repeats nothing
// of the path, which may hold a PAN put where the id belongs.
const noSuchCard = `no such card: cards are named by their id (crd_ and 24 hex digits); ` +
	`POST /v1/cards/search {"pan": "..."} finds a card's id`

// cardView is a card as the admin API shows it: the same figures DE54
// carries, in minor units.
type cardView struct {
	ID              string `json:"id"`  // ledger.Card.Ref
	PAN             string `json:"pan"` // masked
	Currency        string `json:"currency"`
	Status          string `json:"status"`
	Balance         int64  `json:"balance"`
	Available       int64  `json:"available"`
	Held            int64  `json:"held"`
	FundBalance     int64  `json:"fund_balance"`
	RedeemableToday int64  `json:"redeemable_today"`
	RedeemedToday   int64  `json:"redeemed_today"`
}

func viewCard(c *ledger.Card, lim config.Limits) cardView {
	return cardView{
		ID: c.Ref, PAN: c.Masked, Currency: c.Currency, Status: c.Status,
		Balance: c.Balance(), Available: c.Available(), Held: c.Held, FundBalance: c.Fund,
		RedeemableToday: c.RedeemableToday(lim.RedemptionQuota), RedeemedToday: c.RedeemedToday,
	}
}

// orderView is a redemption order as the admin API shows it.
type orderView struct {
	ledger.Order
	Card string `json:"card_id"` // the card's id
	PAN  string `json:"pan"`     // masked
}

func viewOrder(o ledger.Order) orderView {
	return orderView{Order: o, Card: o.CardRef, PAN: o.Masked}
}

type newCardRequest struct {
	PAN         string `json:"pan"`
	Currency    string `json:"currency"`
	Balance     int64  `json:"balance"`
	FundBalance int64  `json:"fund_balance"`
}

func (s *Server) createCard(w http.ResponseWriter, r *http.Request) {
	var req newCardRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Currency == "" {
		req.Currency = "156"
	}
	c, err := s.ledger.CreateCard(r.Context(), ledger.NewCard{PAN: req.PAN, Currency: req.Currency, Balance: req.Balance, FundBalance: req.FundBalance})
	switch {
	case errors.Is(err, ledger.ErrInvalidCard):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ledger.ErrCardExists):
		writeError(w, http.StatusConflict, fmt.Sprintf("card %s exists", iso.MaskPAN(req.PAN)))
	case err != nil:
		s.internalError(w, "creating card", err)
	default:
		s.log.Info("card created", "card", c.Ref, "pan", c.Masked, "currency", c.Currency, "balance", c.Cash, "fund_balance", c.Fund)
		writeJSON(w, http.StatusCreated, viewCard(c, s.cfg.Load().Limits))
	}
}

// searchCards finds a card by its PAN, given in the body so that it is
// never part of a URL. It answers a list, empty when no card has the PAN.
func (s *Server) searchCards(w http.ResponseWriter, r *http.Request) {
	var req struct {
		PAN string `json:"pan"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if err := (ledger.NewCard{PAN: req.PAN, Currency: "000"}).Validate(); err != nil {
		writeError(w, http.StatusBadRequest, `"pan" must be 12 to 19 digits`)
		return
	}
	cards := []cardView{}
	c, err := s.ledger.Card(r.Context(), req.PAN, fund.Day(s.now()))
	switch {
	case errors.Is(err, ledger.ErrUnknownCard):
	case err != nil:
		s.internalError(w, "finding card", err)
		return
	default:
		cards = append(cards, viewCard(c, s.cfg.Load().Limits))
	}
	writeJSON(w, http.StatusOK, map[string]any{"cards": cards})
}

func (s *Server) showCard(w http.ResponseWriter, r *http.Request) {
	c, ok := s.cardFromPath(w, r)
	if ok {
		writeJSON(w, http.StatusOK, viewCard(c, s.cfg.Load().Limits))
	}
}

// cardFromPath reads the card the path's {id} names, answering 404 for
// an id that names none, well formed or not.
func (s *Server) cardFromPath(w http.ResponseWriter, r *http.Request) (*ledger.Card, bool) {
	c, err := s.ledger.CardByRef(r.Context(), r.PathValue("id"), fund.Day(s.now()))
	switch {
	case errors.Is(err, ledger.ErrUnknownCard):
		writeError(w, http.StatusNotFound, noSuchCard)
		return nil, false
	case err != nil:
		s.internalError(w, "reading card", err)
		return nil, false
	}
	return c, true
}

// limitParam reads ?limit=, 100 by default, answering 400 when invalid.
func limitParam(w http.ResponseWriter, r *http.Request) (int, bool) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 100, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		writeError(w, http.StatusBadRequest, "limit must be a number from 1 to 1000")
		return 0, false
	}
	return n, true
}

// cardAndLimit reads the card of the path and ?limit= for the listings.
func (s *Server) cardAndLimit(w http.ResponseWriter, r *http.Request) (*ledger.Card, int, bool) {
	limit, ok := limitParam(w, r)
	if !ok {
		return nil, 0, false
	}
	c, ok := s.cardFromPath(w, r)
	return c, limit, ok
}

func (s *Server) cardTransactions(w http.ResponseWriter, r *http.Request) {
	c, limit, ok := s.cardAndLimit(w, r)
	if !ok {
		return
	}
	ms, err := s.ledger.Movements(r.Context(), c.ID, limit)
	if err != nil {
		s.internalError(w, "listing movements", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": c.Ref, "pan": c.Masked, "transactions": ms})
}

func (s *Server) cardOrders(w http.ResponseWriter, r *http.Request) {
	c, limit, ok := s.cardAndLimit(w, r)
	if !ok {
		return
	}
	os, err := s.ledger.CardOrders(r.Context(), c.ID, limit)
	if err != nil {
		s.internalError(w, "listing orders", err)
		return
	}
	views := make([]orderView, len(os))
	for i, o := range os {
		views[i] = viewOrder(o)
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": c.Ref, "pan": c.Masked, "orders": views})
}

func (s *Server) showOrder(w http.ResponseWriter, r *http.Request) {
	o, err := s.ledger.Order(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, ledger.ErrUnknownOrder):
		writeError(w, http.StatusNotFound, "no such order")
	case err != nil:
		s.internalError(w, "reading order", err)
	default:
		writeJSON(w, http.StatusOK, viewOrder(*o))
	}
}

// sweepView is a card's sweep settings.
type sweepView struct {
	ID        string `json:"id"`
	PAN       string `json:"pan"` // masked
	Enabled   bool   `json:"enabled"`
	Threshold int64  `json:"threshold"`
	// Default says the threshold is the configured one.
	Default bool `json:"default_threshold"`
}

func (s *Server) setSweep(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Enabled   *bool  `json:"enabled"`
		Threshold *int64 `json:"threshold"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.Enabled == nil {
		writeError(w, http.StatusBadRequest, `"enabled" is required; "threshold" (minor units) is optional, absent for the configured one`)
		return
	}
	c, ok := s.cardFromPath(w, r)
	if !ok {
		return
	}
	err := s.ledger.SetSweep(r.Context(), c.ID, *req.Enabled, req.Threshold)
	switch {
	case errors.Is(err, ledger.ErrInvalidCard):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		s.internalError(w, "setting sweep", err)
		return
	}
	s.log.Info("card sweep set", "card", c.Ref, "pan", c.Masked, "enabled", *req.Enabled)
	s.showSweep(w, r)
}

func (s *Server) showSweep(w http.ResponseWriter, r *http.Request) {
	c, ok := s.cardFromPath(w, r)
	if !ok {
		return
	}
	on, threshold, err := s.ledger.SweepSettings(r.Context(), c.ID)
	if err != nil {
		s.internalError(w, "reading sweep", err)
		return
	}
	v := sweepView{ID: c.Ref, PAN: c.Masked, Enabled: on, Threshold: s.cfg.Load().Sweep.Threshold, Default: threshold == nil}
	if threshold != nil {
		v.Threshold = *threshold
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) setCardStatus(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Status string `json:"status"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	c, ok := s.cardFromPath(w, r)
	if !ok {
		return
	}
	err := s.ledger.SetCardStatus(r.Context(), c.ID, req.Status)
	switch {
	case errors.Is(err, ledger.ErrInvalidCard):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ledger.ErrUnknownCard):
		writeError(w, http.StatusNotFound, noSuchCard)
	case err != nil:
		s.internalError(w, "setting card status", err)
	default:
		s.log.Info("card status changed", "card", c.Ref, "pan", c.Masked, "status", req.Status)
		s.showCard(w, r)
	}
}
