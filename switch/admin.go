package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/fund"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/timer"
)

// maxAdminBody bounds admin request bodies.
const maxAdminBody = 64 << 10

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/cards", s.createCard)
	mux.HandleFunc("GET /v1/cards/{pan}", s.showCard)
	mux.HandleFunc("GET /v1/cards/{pan}/transactions", s.cardTransactions)
	mux.HandleFunc("PUT /v1/cards/{pan}/status", s.setCardStatus)
	mux.HandleFunc("GET /v1/cards/{pan}/orders", s.cardOrders)
	mux.HandleFunc("POST /v1/cards/{pan}/transfer-out", s.transferOut)
	mux.HandleFunc("GET /v1/orders/{id}", s.showOrder)
	mux.HandleFunc("PUT /v1/cards/{pan}/sweep", s.setSweep)
	mux.HandleFunc("GET /v1/cards/{pan}/sweep", s.showSweep)
	mux.HandleFunc("GET /v1/timers", s.listTimers)
	mux.HandleFunc("GET /v1/exceptions", s.listExceptions)
	mux.HandleFunc("POST /v1/exceptions/{id}/resolve", s.resolveException)
	mux.HandleFunc("GET /v1/config", s.showConfig)
	mux.HandleFunc("GET /v1/config/status", s.configStatus)
	mux.HandleFunc("GET /v1/config/dialects/{name}", s.showDialect)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// cardView is a card as the admin API shows it: the same figures DE54
// carries, in minor units.
type cardView struct {
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
		PAN: iso.MaskPAN(c.PAN), Currency: c.Currency, Status: c.Status,
		Balance: c.Balance(), Available: c.Available(), Held: c.Held, FundBalance: c.Fund,
		RedeemableToday: c.RedeemableToday(lim.RedemptionQuota), RedeemedToday: c.RedeemedToday,
	}
}

// orderView is a redemption order as the admin API shows it.
type orderView struct {
	ledger.Order
	PAN string `json:"pan"` // masked
}

func viewOrder(o ledger.Order) orderView { return orderView{Order: o, PAN: iso.MaskPAN(o.PAN)} }

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
		s.log.Info("card created", "pan", iso.MaskPAN(c.PAN), "currency", c.Currency, "balance", c.Cash, "fund_balance", c.Fund)
		writeJSON(w, http.StatusCreated, viewCard(c, s.cfg.Load().Limits))
	}
}

func (s *Server) showCard(w http.ResponseWriter, r *http.Request) {
	c, ok := s.cardFromPath(w, r)
	if ok {
		writeJSON(w, http.StatusOK, viewCard(c, s.cfg.Load().Limits))
	}
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
	ms, err := s.ledger.Movements(r.Context(), c.PAN, limit)
	if err != nil {
		s.internalError(w, "listing movements", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"pan": iso.MaskPAN(c.PAN), "transactions": ms})
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
	writeJSON(w, http.StatusOK, map[string]any{"pan": iso.MaskPAN(c.PAN), "orders": views})
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
	err := s.ledger.SetSweep(r.Context(), c.PAN, *req.Enabled, req.Threshold)
	switch {
	case errors.Is(err, ledger.ErrInvalidCard):
		writeError(w, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		s.internalError(w, "setting sweep", err)
		return
	}
	s.log.Info("card sweep set", "pan", iso.MaskPAN(c.PAN), "enabled", *req.Enabled)
	s.showSweep(w, r)
}

func (s *Server) showSweep(w http.ResponseWriter, r *http.Request) {
	c, ok := s.cardFromPath(w, r)
	if !ok {
		return
	}
	on, threshold, err := s.ledger.SweepSettings(r.Context(), c.PAN)
	if err != nil {
		s.internalError(w, "reading sweep", err)
		return
	}
	v := sweepView{PAN: iso.MaskPAN(c.PAN), Enabled: on, Threshold: s.cfg.Load().Sweep.Threshold, Default: threshold == nil}
	if threshold != nil {
		v.Threshold = *threshold
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) listTimers(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	state := q.Get("state")
	if state != "" && !slices.Contains(timer.States, state) {
		writeError(w, http.StatusBadRequest, "state must be one of "+strings.Join(timer.States, ", "))
		return
	}
	tasks, err := timer.List(r.Context(), s.pool, q.Get("kind"), state, limit)
	if err != nil {
		s.internalError(w, "listing timer tasks", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"tasks": tasks})
}

func (s *Server) setCardStatus(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Status string `json:"status"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	pan := r.PathValue("pan")
	err := s.ledger.SetCardStatus(r.Context(), pan, req.Status)
	switch {
	case errors.Is(err, ledger.ErrInvalidCard):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ledger.ErrUnknownCard):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no card %s", iso.MaskPAN(pan)))
	case err != nil:
		s.internalError(w, "setting card status", err)
	default:
		s.log.Info("card status changed", "pan", iso.MaskPAN(pan), "status", req.Status)
		s.showCard(w, r)
	}
}

func (s *Server) cardFromPath(w http.ResponseWriter, r *http.Request) (*ledger.Card, bool) {
	pan := r.PathValue("pan")
	if err := (ledger.NewCard{PAN: pan, Currency: "000"}).Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "PAN must be 12 to 19 digits")
		return nil, false
	}
	c, err := s.ledger.Card(r.Context(), pan, fund.Day(s.proc.now()))
	switch {
	case errors.Is(err, ledger.ErrUnknownCard):
		writeError(w, http.StatusNotFound, fmt.Sprintf("no card %s", iso.MaskPAN(pan)))
		return nil, false
	case err != nil:
		s.internalError(w, "reading card", err)
		return nil, false
	}
	return c, true
}

// showConfig shows the config this instance runs on (dialects by name).
func (s *Server) showConfig(w http.ResponseWriter, _ *http.Request) {
	snap := s.cfg.Load()
	names := make([]string, 0, len(snap.Dialects))
	for n := range snap.Dialects {
		names = append(names, n)
	}
	sort.Strings(names)
	banks := make(map[string]*config.Bank, len(snap.Banks))
	for code, b := range snap.Banks {
		banks[code] = b.Redacted()
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"revision": snap.Revision, "banks": banks, "dialects": names, "limits": snap.Limits,
		"fund": snap.Fund, "sweep": snap.Sweep, "calendar": snap.Calendar,
	})
}

// showDialect serves a dialect's moov-io spec, for tools that speak to a
// bank's listener (goldcard replay --bank).
func (s *Server) showDialect(w http.ResponseWriter, r *http.Request) {
	spec, ok := s.cfg.Load().Dialects[r.PathValue("name")]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no dialect %q in the configuration", r.PathValue("name")))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(spec)
}

// configStatus is what this instance reports to the config center: the
// revision it applied and the last change it refused, if any.
func (s *Server) configStatus(w http.ResponseWriter, _ *http.Request) {
	if s.watcher == nil {
		writeJSON(w, http.StatusOK, map[string]any{"revision": s.cfg.Load().Revision, "watching": false})
		return
	}
	writeJSON(w, http.StatusOK, s.watcher.Status())
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, "PostgreSQL is not answering: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) internalError(w http.ResponseWriter, what string, err error) {
	s.log.Error("admin API: "+what, "err", err)
	writeError(w, http.StatusInternalServerError, what+" failed; see the switch's log")
}

// readJSON decodes a request body strictly, answering 400 on failure.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body := http.MaxBytesReader(w, r.Body, maxAdminBody)
	buf, err := io.ReadAll(body)
	if err == nil {
		err = config.DecodeStrict(buf, v)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, reason string) {
	writeJSON(w, status, map[string]string{"error": reason})
}
