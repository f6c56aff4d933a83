package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/timer"
)

// maxAdminBody bounds admin request bodies.
const maxAdminBody = 64 << 10

// adminHandler routes the admin API. Cards are named in paths by their id
// (their ledger ref), never by their PAN: a path ends up in proxies' and
// access logs, and in the answers below, which never echo one.
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/cards", s.createCard)
	mux.HandleFunc("POST /v1/cards/search", s.searchCards)
	mux.HandleFunc("GET /v1/cards/{id}", s.showCard)
	mux.HandleFunc("GET /v1/cards/{id}/transactions", s.cardTransactions)
	mux.HandleFunc("PUT /v1/cards/{id}/status", s.setCardStatus)
	mux.HandleFunc("PUT /v1/cards/{id}/password", s.setCardPassword)
	mux.HandleFunc("GET /v1/cards/{id}/orders", s.cardOrders)
	mux.HandleFunc("POST /v1/cards/{id}/transfer-out", s.transferOut)
	mux.HandleFunc("GET /v1/orders/{id}", s.showOrder)
	mux.HandleFunc("PUT /v1/cards/{id}/sweep", s.setSweep)
	mux.HandleFunc("GET /v1/cards/{id}/sweep", s.showSweep)
	mux.HandleFunc("GET /v1/timers", s.listTimers)
	mux.HandleFunc("POST /v1/timers/run", s.runTimer)
	mux.HandleFunc("GET /v1/exceptions", s.listExceptions)
	mux.HandleFunc("POST /v1/exceptions/{id}/resolve", s.resolveException)
	mux.HandleFunc("GET /v1/banks/{code}/totals", s.totals)
	mux.HandleFunc("POST /v1/reconciliations/bank", s.reconcileBank)
	mux.HandleFunc("POST /v1/reconciliations/fund", s.reconcileFund)
	mux.HandleFunc("GET /v1/cases", s.listCases)
	mux.HandleFunc("GET /v1/cases/{id}", s.showCase)
	mux.HandleFunc("POST /v1/cases/{id}/adjust", s.adjustCase)
	mux.HandleFunc("POST /v1/cases/{id}/write-off", s.writeOffCase)
	mux.HandleFunc("GET /v1/adjustments", s.listAdjustments)
	mux.HandleFunc("POST /v1/adjustments/{id}/approve", s.approveAdjustment)
	mux.HandleFunc("POST /v1/adjustments/{id}/reject", s.rejectAdjustment)
	if s.keys != nil {
		mux.HandleFunc("GET /v1/keys", s.showKeys)
		mux.HandleFunc("POST /v1/keys/rotate", s.rotateKey)
		mux.HandleFunc("POST /v1/keys/rewrap", s.rewrapKeys)
	}
	mux.HandleFunc("GET /v1/config", s.showConfig)
	mux.HandleFunc("GET /v1/config/status", s.configStatus)
	mux.HandleFunc("GET /v1/config/dialects/{name}", s.showDialect)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", noEndpoint)
	return cleanPathsOnly(mux)
}

// noEndpoint answers a path the API does not have, without repeating it.
func noEndpoint(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "no such endpoint for "+r.Method+"; the README's admin API table lists them")
}

// cleanPathsOnly answers 404 to a path that is not in its clean form
// (with "//", "." or ".." segments). ServeMux would redirect it to the
// clean one, and a redirect repeats the path in its Location and body.
func cleanPathsOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		c := path.Clean(p)
		if strings.HasSuffix(p, "/") && c != "/" {
			c += "/"
		}
		if r.Method != http.MethodConnect && c != p {
			noEndpoint(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
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

// runTimer makes a pending task due now: a day's sweep an operator wants
// run before its time, a follow-up not to wait for.
func (s *Server) runTimer(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Kind string `json:"kind"`
		Key  string `json:"key"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.Kind == "" || req.Key == "" {
		writeError(w, http.StatusBadRequest, "kind and key are required: GET /v1/timers lists the tasks")
		return
	}
	if s.timer == nil {
		writeError(w, http.StatusServiceUnavailable, "this switch runs no timer")
		return
	}
	switch found, err := s.timer.RunNow(r.Context(), req.Kind, req.Key); {
	case errors.Is(err, timer.ErrRunning):
		writeError(w, http.StatusConflict, "the task is being run now")
	case err != nil:
		s.internalError(w, "running a timer task", err)
	case !found:
		writeError(w, http.StatusNotFound, "no such pending task")
	default:
		s.log.Info("timer task made due now", "kind", req.Kind, "key", req.Key)
		writeJSON(w, http.StatusAccepted, map[string]any{"kind": req.Kind, "key": req.Key, "due": "now"})
	}
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
		writeError(w, http.StatusNotFound, "no such dialect in the configuration (GET /v1/config names them)")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(spec)
}

// configStatus is what this instance reports to the config center: the
// revision it applied and the last change it refused, if any.
func (s *Server) configStatus(w http.ResponseWriter, _ *http.Request) {
	if s.status == nil {
		writeJSON(w, http.StatusOK, map[string]any{"revision": s.cfg.Load().Revision, "watching": false})
		return
	}
	writeJSON(w, http.StatusOK, s.status())
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
	s.log.Error("admin API: "+what, "err", iso.MaskPANs(err.Error()))
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

// writeError answers {"error": reason}. A reason can carry what the
// request held (a JSON decoder's complaint names the field it did not
// know), so any run of digits long enough to be a PAN is masked here, for
// every error the API gives.
func writeError(w http.ResponseWriter, status int, reason string) {
	writeJSON(w, status, map[string]string{"error": iso.MaskPANs(reason)})
}
