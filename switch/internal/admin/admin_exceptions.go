package admin

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/goldcard/goldcard/ledger"
)

// exceptionView is an exception as the admin API shows it (PAN masked).
type exceptionView struct {
	ledger.Exception
	PAN string `json:"pan,omitempty"`
}

// listExceptions answers GET /v1/exceptions?state=open|all&limit=: what
// the bank believes moved that the switch did not post, newest first.
func (s *Server) listExceptions(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	all := false
	switch r.URL.Query().Get("state") {
	case "", "open":
	case "all":
		all = true
	default:
		writeError(w, http.StatusBadRequest, "state must be open or all")
		return
	}
	es, err := s.ledger.Exceptions(r.Context(), all, limit)
	if err != nil {
		s.internalError(w, "listing exceptions", err)
		return
	}
	out := make([]exceptionView, len(es))
	for i, e := range es {
		out[i] = exceptionView{Exception: e}
		if e.Masked != "" {
			out[i].PAN = e.Masked
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"exceptions": out})
}

// resolveException answers POST /v1/exceptions/{id}/resolve {"resolution"}:
// an operator closes an exception, saying what was done about it.
func (s *Server) resolveException(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusNotFound, "no such exception")
		return
	}
	var req struct {
		Resolution string `json:"resolution"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	switch err := s.ledger.ResolveException(r.Context(), id, req.Resolution); {
	case errors.Is(err, ledger.ErrNoResolution):
		writeError(w, http.StatusBadRequest, "resolution is required: say what was done about it")
	case errors.Is(err, ledger.ErrUnknownException):
		writeError(w, http.StatusNotFound, "no such open exception")
	case err != nil:
		s.internalError(w, "resolving exception", err)
	default:
		s.log.Info("exception resolved", "exception", id)
		writeJSON(w, http.StatusOK, map[string]any{"id": id, "resolved": true})
	}
}
