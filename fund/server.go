package fund

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
)

// Handler serves the Gateway protocol from p: the fundsim server, and a
// stand-in fund company for tests.
func Handler(p Provider, log *slog.Logger) http.Handler {
	h := &handler{p: p, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /redemptions", func(w http.ResponseWriter, r *http.Request) { h.place(w, r, p.Redeem) })
	mux.HandleFunc("POST /subscriptions", func(w http.ResponseWriter, r *http.Request) { h.place(w, r, p.Subscribe) })
	mux.HandleFunc("GET /redemptions/{id}", func(w http.ResponseWriter, r *http.Request) { h.status(w, r, p.RedemptionStatus) })
	mux.HandleFunc("GET /subscriptions/{id}", func(w http.ResponseWriter, r *http.Request) { h.status(w, r, p.SubscriptionStatus) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	return mux
}

type handler struct {
	p   Provider
	log *slog.Logger
}

var orderID = regexp.MustCompile(`^[A-Za-z0-9_-]{8,64}$`)

func (h *handler) place(w http.ResponseWriter, r *http.Request, place func(context.Context, Order) (Status, error)) {
	var o Order
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid order: " + err.Error()})
		return
	}
	if !orderID.MatchString(o.ID) || o.Account == "" || o.Amount <= 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "order_id (8-64 letters, digits, - or _), account and a positive amount are required"})
		return
	}
	// The order runs its course even if the caller stops waiting: its
	// answer then arrives late, as from a real fund company.
	st, err := place(context.WithoutCancel(r.Context()), o)
	if errors.Is(err, ErrNoAnswer) {
		h.log.Info("request lost on purpose", "order", o.ID)
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	}
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	h.log.Info("order answered", "order", o.ID, "amount", o.Amount, "state", st.State)
	writeJSON(w, http.StatusOK, st)
}

func (h *handler) status(w http.ResponseWriter, r *http.Request, status func(context.Context, string) (Status, error)) {
	st, err := status(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, ErrUnknownOrder):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown order"})
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	default:
		writeJSON(w, http.StatusOK, st)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
