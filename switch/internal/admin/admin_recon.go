package admin

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/internal/metric"
	"github.com/goldcard/goldcard/switch/internal/recon"
)

// maxReconFile bounds a daily file uploaded to reconcile. Files are read
// a row at a time, so the bound is of the upload, not of memory.
const maxReconFile = 1 << 30

// dateParam reads a YYYY-MM-DD query parameter, answering 400 if it is
// missing or malformed.
func dateParam(w http.ResponseWriter, r *http.Request, name string) (time.Time, bool) {
	v := r.URL.Query().Get(name)
	d, err := time.Parse(time.DateOnly, v)
	if err != nil {
		writeError(w, http.StatusBadRequest, name+" must be a date as YYYY-MM-DD")
		return time.Time{}, false
	}
	return d, true
}

// needOperator is who asks, answering 400 when nobody is named.
func (s *Server) needOperator(w http.ResponseWriter, r *http.Request) (string, bool) {
	op := operator(r)
	if op == "" {
		writeError(w, http.StatusBadRequest, "name the operator: send "+OperatorHeader+" (the CLI sends $GOLDCARD_OPERATOR) on a loopback API without credentials, "+
			"or use an operator's token (--admin-operators)")
		return "", false
	}
	if op == sharedToken && len(s.auth.operators) > 0 {
		writeError(w, http.StatusForbidden, "the shared token names nobody: use your own operator token (--admin-operators) for this")
		return "", false
	}
	return op, true
}

// totals answers a bank's totals of one business date.
func (s *Server) totals(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	if _, ok := s.cfg.Load().Banks[code]; !ok {
		writeError(w, http.StatusNotFound, "no such bank in the config (GET /v1/config lists them)")
		return
	}
	day, ok := dateParam(w, r, "date")
	if !ok {
		return
	}
	ts, err := s.ledger.Totals(r.Context(), code, day)
	if err != nil {
		s.internalError(w, "totalling", err)
		return
	}
	if ts == nil {
		ts = []ledger.Total{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"bank": code, "business_date": day.Format(time.DateOnly), "totals": ts})
}

// reconcileBank matches an uploaded settlement file against the ledger
// and answers the run and its cases, streamed.
func (s *Server) reconcileBank(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get("bank")
	bank, ok := s.cfg.Load().Banks[code]
	if !ok {
		writeError(w, http.StatusNotFound, "no bank "+strconv.Quote(code)+" in the config (bank=CODE)")
		return
	}
	s.reconcile(w, r, "bank", config.DefaultBankFormat, func(info ledger.RunInfo, f config.ReconFormat, file io.Reader) (ledger.Run, error) {
		info.Bank = bank.Code
		return s.ledger.ReconcileBank(r.Context(), info, recon.BankRows(f, bank, file))
	})
}

// reconcileFund matches an uploaded confirmation file of the fund
// company's against the day's orders, settling the pending ones it ends.
func (s *Server) reconcileFund(w http.ResponseWriter, r *http.Request) {
	s.reconcile(w, r, "fund", config.DefaultFundFormat, func(info ledger.RunInfo, f config.ReconFormat, file io.Reader) (ledger.Run, error) {
		return s.ledger.ReconcileFund(r.Context(), info, recon.FundRows(f, file))
	})
}

// reconcile runs an uploaded daily file of source's through run, in the
// format the request names (or def), and answers the run.
func (s *Server) reconcile(w http.ResponseWriter, r *http.Request, source, def string,
	run func(ledger.RunInfo, config.ReconFormat, io.Reader) (ledger.Run, error)) {
	day, ok := dateParam(w, r, "date")
	if !ok {
		return
	}
	name := r.URL.Query().Get("format")
	if name == "" {
		name = def
	}
	format, ok := s.cfg.Load().ReconFormats[name]
	if !ok || format.Source != source {
		writeError(w, http.StatusBadRequest, "no "+source+" file format "+strconv.Quote(name)+" in the config (recon_formats)")
		return
	}
	op, ok := s.needOperator(w, r)
	if !ok {
		return
	}
	file, digest, release, ok := s.spool(w, r)
	if !ok {
		return
	}
	defer release()
	res, err := run(ledger.RunInfo{BusinessDate: day, Format: name, Digest: digest, RunBy: op}, format, file)
	if err != nil {
		s.reconError(w, err)
		return
	}
	s.log.Info("reconciled", "source", source, "bank", res.Bank, "business_date", res.BusinessDate, "run", res.ID, "rows", res.Rows,
		"matched", res.Matched, "settled", res.Settled, "breaks", res.Breaks(), "open", res.Open, "review", res.Review, "operator", op)
	s.writeRun(w, r, res)
}

// reconRunsAtOnce bounds the reconciliations one switch runs at once:
// each holds a database connection the requests of cards share.
// reconUploadsAtOnce bounds the uploads being kept on disk meanwhile.
const (
	reconRunsAtOnce    = 2
	reconUploadsAtOnce = 8
)

// uploadTime bounds the upload of one daily file.
const uploadTime = 30 * time.Minute

// spool copies the uploaded file to a temporary file, so that the run's
// transaction reads it at the disk's pace, not the client's, then waits
// for one of the switch's reconciliation turns, and returns the file (at
// its start), its SHA-256 and what releases both. It answers the request
// itself when it cannot (503 while too many uploads are kept, 413 for a
// file too large, 408 for one too slow).
func (s *Server) spool(w http.ResponseWriter, r *http.Request) (*os.File, func() []byte, func(), bool) {
	select {
	case s.reconUploads <- struct{}{}:
	default:
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusServiceUnavailable, "this switch is taking "+strconv.Itoa(reconUploadsAtOnce)+" daily files already; try again shortly")
		return nil, nil, nil, false
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(uploadTime))
	f, err := os.CreateTemp("", "goldcard-recon-*")
	if err != nil {
		<-s.reconUploads
		s.internalError(w, "keeping the upload", err)
		return nil, nil, nil, false
	}
	drop := func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
		<-s.reconUploads
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), http.MaxBytesReader(w, r.Body, maxReconFile)); err != nil {
		drop()
		s.reconError(w, err)
		return nil, nil, nil, false
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		drop()
		s.internalError(w, "keeping the upload", err)
		return nil, nil, nil, false
	}
	select {
	case s.reconTurns <- struct{}{}:
	case <-r.Context().Done():
		drop()
		return nil, nil, nil, false
	}
	sum := h.Sum(nil)
	return f, func() []byte { return sum }, func() { <-s.reconTurns; drop() }, true
}

// reconError answers a run that failed: a file that cannot be read gets
// its line; nothing was recorded.
func (s *Server) reconError(w http.ResponseWriter, err error) {
	var le *recon.LineError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "the file is larger than "+strconv.Itoa(maxReconFile>>20)+" MiB; nothing was reconciled")
	case errors.As(err, &le):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": le.Error() + "; nothing was reconciled", "line": le.Line})
	case errors.Is(err, recon.ErrEmpty):
		writeError(w, http.StatusUnprocessableEntity, err.Error()+"; nothing was reconciled")
	case errors.Is(err, ledger.ErrRunAgain):
		writeError(w, http.StatusConflict, err.Error()+"; nothing was recorded")
	case errors.Is(err, os.ErrDeadlineExceeded):
		writeError(w, http.StatusRequestTimeout, "the upload took longer than "+uploadTime.String()+"; nothing was reconciled")
	default:
		s.internalError(w, "reconciling", err)
	}
}

// writeRun answers a run: its counts, then its cases one by one as they
// are read from the ledger.
func (s *Server) writeRun(w http.ResponseWriter, r *http.Request, run ledger.Run) {
	head, err := json.Marshal(run)
	if err != nil {
		s.internalError(w, "answering", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(head[:len(head)-1])
	_, _ = io.WriteString(w, `,"cases":[`)
	first := true
	err = s.ledger.EachCase(r.Context(), ledger.CaseFilter{Run: run.ID}, func(c ledger.Case) error {
		b, err := json.Marshal(masked(c))
		if err != nil {
			return err
		}
		if !first {
			_, _ = io.WriteString(w, ",")
		}
		first = false
		_, err = w.Write(b)
		return err
	})
	if err != nil {
		// The status is sent: the answer is cut short, and its JSON does
		// not parse, which a client sees.
		s.log.Error("admin API: listing a run's cases", "run", run.ID, "err", err)
		return
	}
	_, _ = io.WriteString(w, "]}\n")
}

func (s *Server) listCases(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	for name, allowed := range map[string][]string{"source": {"bank", "fund"}, "state": ledger.CaseStates, "kind": ledger.CaseKinds} {
		if v := q.Get(name); v != "" && !slices.Contains(allowed, v) {
			writeError(w, http.StatusBadRequest, name+" must be one of "+strings.Join(allowed, ", "))
			return
		}
	}
	f := ledger.CaseFilter{Source: q.Get("source"), Bank: q.Get("bank"), State: q.Get("state"), Kind: q.Get("kind"), Limit: limit}
	if q.Get("date") != "" {
		d, ok := dateParam(w, r, "date")
		if !ok {
			return
		}
		f.BusinessDate = &d
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "after must be a case id")
			return
		}
		f.After = n
	}
	cases := []ledger.Case{}
	if err := s.ledger.EachCase(r.Context(), f, func(c ledger.Case) error { cases = append(cases, masked(c)); return nil }); err != nil {
		s.internalError(w, "listing cases", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"cases": cases})
}

// masked is a case as the API shows it: a fund company's order id that
// holds a card number's run of digits (a file that put one there) is
// shown masked, as every PAN is. A bank transaction's fields are too
// short to hold one.
func masked(c ledger.Case) ledger.Case {
	c.Ident, c.OrderID = iso.MaskPANs(c.Ident), iso.MaskPANs(c.OrderID)
	return c
}

// idParam reads a numeric path id, answering 404 when it is not one.
func idParam(w http.ResponseWriter, r *http.Request, what string) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusNotFound, "no such "+what)
		return 0, false
	}
	return id, true
}

func (s *Server) showCase(w http.ResponseWriter, r *http.Request) {
	id, ok := idParam(w, r, "case")
	if !ok {
		return
	}
	c, adj, err := s.ledger.CaseByID(r.Context(), id)
	if err != nil {
		s.caseError(w, err)
		return
	}
	if adj == nil {
		adj = []ledger.Adjustment{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"case": masked(c), "adjustments": adj})
}

// adjustCase records an operator's adjustment of a case: posted at once
// (201) or, above the four-eyes amount, waiting for a second operator
// (202).
func (s *Server) adjustCase(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Card   string `json:"card"`
		Debit  string `json:"debit"`
		Credit string `json:"credit"`
		Amount int64  `json:"amount"`
		Reason string `json:"reason"`
	}
	id, op, ok := s.operatorAct(w, r, "case", &req)
	if !ok {
		return
	}
	a, err := s.ledger.Adjust(r.Context(), ledger.AdjustRequest{Case: id, Card: req.Card, Debit: req.Debit, Credit: req.Credit,
		Amount: req.Amount, Reason: req.Reason, Operator: op, FourEyesAbove: s.cfg.Load().Limits.FourEyesAbove})
	if err != nil {
		s.caseError(w, err)
		return
	}
	s.log.Info("adjustment", "case", id, "adjustment", a.ID, "state", a.State, "amount", a.Amount, "operator", op)
	status := http.StatusCreated
	if a.State == "pending" {
		status = http.StatusAccepted
	}
	writeJSON(w, status, a)
}

func (s *Server) writeOffCase(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Reason string `json:"reason"`
	}
	id, op, ok := s.operatorAct(w, r, "case", &req)
	if !ok {
		return
	}
	c, done, err := s.ledger.WriteOff(r.Context(), id, op, req.Reason, s.cfg.Load().Limits.FourEyesAbove)
	if err != nil {
		s.caseError(w, err)
		return
	}
	if !done {
		s.log.Info("write-off asked for", "case", id, "operator", op)
		writeJSON(w, http.StatusAccepted, masked(c))
		return
	}
	s.log.Info("case written off", "case", id, "operator", op)
	writeJSON(w, http.StatusOK, masked(c))
}

func (s *Server) listAdjustments(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	if v := q.Get("state"); v != "" && !slices.Contains(ledger.AdjustmentStates, v) {
		writeError(w, http.StatusBadRequest, "state must be one of "+strings.Join(ledger.AdjustmentStates, ", "))
		return
	}
	var after int64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "after must be an adjustment id")
			return
		}
		after = n
	}
	adj, err := s.ledger.Adjustments(r.Context(), ledger.AdjustmentFilter{State: q.Get("state"), After: after, Limit: limit})
	if err != nil {
		s.internalError(w, "listing adjustments", err)
		return
	}
	if adj == nil {
		adj = []ledger.Adjustment{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"adjustments": adj})
}

func (s *Server) approveAdjustment(w http.ResponseWriter, r *http.Request) {
	id, op, ok := s.operatorAct(w, r, "adjustment", nil)
	if !ok {
		return
	}
	a, err := s.ledger.Approve(r.Context(), id, op)
	if err != nil {
		s.caseError(w, err)
		return
	}
	s.log.Info("adjustment approved", "adjustment", id, "case", a.CaseID, "operator", op)
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) rejectAdjustment(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Reason string `json:"reason"`
	}
	id, op, ok := s.operatorAct(w, r, "adjustment", &req)
	if !ok {
		return
	}
	a, err := s.ledger.Reject(r.Context(), id, op, req.Reason)
	if err != nil {
		s.caseError(w, err)
		return
	}
	s.log.Info("adjustment rejected", "adjustment", id, "case", a.CaseID, "operator", op)
	writeJSON(w, http.StatusOK, a)
}

// operatorAct reads what an operator's act on a case or an adjustment
// (what) names: the path's id, the body into body (none when nil) and
// the operator. It answers the request itself when one is wrong.
func (s *Server) operatorAct(w http.ResponseWriter, r *http.Request, what string, body any) (int64, string, bool) {
	id, ok := idParam(w, r, what)
	if !ok {
		return 0, "", false
	}
	if body != nil && !readJSON(w, r, body) {
		return 0, "", false
	}
	op, ok := s.needOperator(w, r)
	return id, op, ok
}

// caseError answers a case or adjustment the ledger refused.
func (s *Server) caseError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ledger.ErrUnknownCase):
		writeError(w, http.StatusNotFound, "no such case")
	case errors.Is(err, ledger.ErrUnknownAdjustment):
		writeError(w, http.StatusNotFound, "no such adjustment waiting for approval")
	case errors.Is(err, ledger.ErrSameOperator):
		writeError(w, http.StatusForbidden, err.Error())
	case errors.Is(err, ledger.ErrCaseClosed), errors.Is(err, ledger.ErrAdjustmentPending), errors.Is(err, ledger.ErrAdjustmentOverdraw),
		errors.Is(err, ledger.ErrWriteOffWaits):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, ledger.ErrBadAdjustment):
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		s.internalError(w, "working a case", err)
	}
}

// caseCollector reports the open reconciliation cases, read from the
// ledger at each scrape (a count over the open cases' own index).
type caseCollector struct{ l *ledger.Ledger }

var (
	casesOpenDesc = prometheus.NewDesc(metric.ReconCasesOpen,
		"Reconciliation cases no operator has resolved (GET /v1/cases?state=open), by source (bank or fund), bank and kind.",
		[]string{"source", "bank", "kind"}, nil)
	oldestOpenDesc = prometheus.NewDesc(metric.ReconOldestOpen,
		"Age of the oldest open reconciliation case of each source, bank and kind, in seconds.",
		[]string{"source", "bank", "kind"}, nil)
)

func (caseCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- casesOpenDesc
	ch <- oldestOpenDesc
}

func (c caseCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	open, err := c.l.OpenCases(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(casesOpenDesc, err)
		return
	}
	now := time.Now()
	for _, o := range open {
		ch <- prometheus.MustNewConstMetric(casesOpenDesc, prometheus.GaugeValue, float64(o.Count), o.Source, o.Bank, o.Kind)
		ch <- prometheus.MustNewConstMetric(oldestOpenDesc, prometheus.GaugeValue, now.Sub(o.Oldest).Seconds(), o.Source, o.Bank, o.Kind)
	}
}
