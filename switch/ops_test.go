package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/locks"
	"github.com/goldcard/goldcard/locks/etcdtest"
	"github.com/goldcard/goldcard/switch/internal/daemon"
	"github.com/goldcard/goldcard/switch/internal/metric"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// The Grafana dashboard and the Prometheus alert rules in ops/ are checked
// here: their structure on their own, and every metric and label they
// name against what a switch exposes after a smoke run.

const (
	dashboardFile = "ops/grafana-dashboard.json"
	alertsFile    = "ops/alerts.yaml"
)

// dashboard is the part of a Grafana dashboard the checks read.
type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []templateVar `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type templateVar struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"` // a string, or {"query": ...}
	Definition string          `json:"definition"`
	Datasource *datasourceRef  `json:"datasource"`
}

// query returns a query variable's PromQL, in either of its forms.
func (v templateVar) query() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct{ Query string }
	_ = json.Unmarshal(v.Query, &o)
	return o.Query
}

type panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	GridPos     *gridPos       `json:"gridPos"`
	Datasource  *datasourceRef `json:"datasource"`
	Targets     []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource *datasourceRef `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // those of a collapsed row
}

type gridPos struct{ H, W, X, Y int }

type datasourceRef struct{ Type, UID string }

// ruleFile is a Prometheus rule file of alerting rules.
type ruleFile struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval,omitempty"`
		Rules    []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// query is a PromQL expression and where it was found.
type query struct{ where, expr string }

func readDashboard(t *testing.T) *dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return &d
}

func readRules(t *testing.T) *ruleFile {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	return &f
}

// allPanels flattens rows' panels into the list.
func (d *dashboard) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

func (d *dashboard) queries() []query {
	var qs []query
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			qs = append(qs, query{"variable " + v.Name, v.query()})
		}
	}
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			qs = append(qs, query{fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), tg.Expr})
		}
	}
	return qs
}

func (f *ruleFile) rules() []rule {
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

func (f *ruleFile) queries() []query {
	var qs []query
	for _, r := range f.rules() {
		qs = append(qs, query{"alert " + r.Alert, r.Expr})
	}
	return qs
}

// TestOpsFiles checks the dashboard's and the rules' structure.
func TestOpsFiles(t *testing.T) {
	t.Parallel()
	t.Run("dashboard", func(t *testing.T) { checkDashboard(t, readDashboard(t)) })
	t.Run("alerts", func(t *testing.T) { checkRules(t, readRules(t)) })
	t.Run("README lists the alerts", func(t *testing.T) { checkAlertTable(t, readRules(t)) })
	t.Run("queries", func(t *testing.T) {
		qs := append(readDashboard(t).queries(), readRules(t).queries()...)
		for _, q := range qs {
			if err := balanced(q.expr); err != nil {
				t.Errorf("%s: %v: %s", q.where, err, q.expr)
			}
			if !metricRef.MatchString(q.expr) {
				t.Errorf("%s names no goldcard metric: %s", q.where, q.expr)
			}
			if strings.Contains(q.expr, "_bucket") && (!strings.Contains(q.expr, "histogram_quantile(") || !groupedBy(q.expr, "le")) {
				t.Errorf("%s: buckets are read with histogram_quantile over sum by (..., le): %s", q.where, q.expr)
			}
		}
	})
}

func checkDashboard(t *testing.T, d *dashboard) {
	if d.UID == "" || d.Title == "" {
		t.Error("the dashboard needs a uid and a title")
	}
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("schemaVersion %d", d.SchemaVersion)
	}
	vars := map[string]templateVar{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v := vars["datasource"]; v.Type != "datasource" || string(v.Query) != `"prometheus"` {
		t.Errorf("want a Prometheus datasource variable named datasource, have %+v", v)
	}
	if v := vars["bank"]; v.Type != "query" || v.query() != "label_values(goldcard_requests_total, bank)" || !fromTemplateDatasource(v.Datasource) {
		t.Errorf("want a bank variable of label_values(goldcard_requests_total, bank) on ${datasource}, have type %q query %q on %+v", v.Type, v.query(), v.Datasource)
	}
	ids := map[int]string{}
	var placed []panel
	for _, p := range d.allPanels() {
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if prev, ok := ids[p.ID]; ok || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or taken by %q", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		if g := p.GridPos; g == nil || g.W < 1 || g.H < 1 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		} else {
			placed = append(placed, p)
		}
		if p.Type == "row" {
			if len(p.Targets) > 0 {
				t.Errorf("row %q has targets", p.Title)
			}
			continue
		}
		if !fromTemplateDatasource(p.Datasource) {
			t.Errorf("panel %q: datasource %+v, want ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no targets", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: target %q needs an expr and a refId of its own", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource != nil && !fromTemplateDatasource(tg.Datasource) {
				t.Errorf("panel %q target %s: datasource %+v", p.Title, tg.RefID, tg.Datasource)
			}
		}
	}
	for i, a := range placed {
		for _, b := range placed[i+1:] {
			if overlap(*a.GridPos, *b.GridPos) {
				t.Errorf("panels %q and %q overlap", a.Title, b.Title)
			}
		}
	}
}

func fromTemplateDatasource(ds *datasourceRef) bool {
	return ds != nil && ds.Type == "prometheus" && ds.UID == "${datasource}"
}

func overlap(a, b gridPos) bool {
	return a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H
}

var (
	alertName   = regexp.MustCompile(`^Goldcard[A-Z][A-Za-z0-9]*$`)
	promelapsed = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)
)

func checkRules(t *testing.T, f *ruleFile) {
	if len(f.Groups) == 0 {
		t.Fatal("no rule groups")
	}
	groups, alerts := map[string]bool{}, map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || groups[g.Name] || len(g.Rules) == 0 {
			t.Errorf("group %q: needs a name of its own and rules", g.Name)
		}
		groups[g.Name] = true
		for _, r := range g.Rules {
			if !alertName.MatchString(r.Alert) || alerts[r.Alert] {
				t.Errorf("alert %q: name missing, malformed or taken", r.Alert)
			}
			alerts[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("alert %s: no expr", r.Alert)
			}
			if !promelapsed.MatchString(r.For) {
				t.Errorf("alert %s: for %q is not a duration", r.Alert, r.For)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("alert %s: severity %q, want critical, warning or info", r.Alert, s)
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("alert %s: no %s", r.Alert, a)
				}
			}
		}
	}
}

// checkAlertTable fails unless ops/README.md's table lists every alert,
// and only those, with its severity.
func checkAlertTable(t *testing.T, f *ruleFile) {
	b, err := os.ReadFile("ops/README.md")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(\\w+)` \\| (\\w+) \\|").FindAllStringSubmatch(string(b), -1) {
		listed[m[1]] = m[2]
	}
	for _, r := range f.rules() {
		if sev, ok := listed[r.Alert]; !ok || sev != r.Labels["severity"] {
			t.Errorf("ops/README.md lists %s with severity %q, want %q", r.Alert, sev, r.Labels["severity"])
		}
		delete(listed, r.Alert)
	}
	for name := range listed {
		t.Errorf("ops/README.md lists %s, which alerts.yaml does not have", name)
	}
}

// balanced reports unbalanced brackets or quotes in a query.
func balanced(expr string) error {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	var quote rune
	escaped := false
	for i, c := range expr {
		switch {
		case quote != 0:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == quote:
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '(' || c == '[' || c == '{':
			stack = append(stack, c)
		case pairs[c] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[c] {
				return fmt.Errorf("unexpected %q at %d", c, i)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if quote != 0 {
		stack = append(stack, quote)
	}
	if len(stack) > 0 {
		return fmt.Errorf("unclosed %q", string(stack))
	}
	return nil
}

var (
	metricRef   = regexp.MustCompile(`\bgoldcard_[a-z0-9_]+\b`)
	selector    = regexp.MustCompile(`\b(goldcard_[a-z0-9_]+)\b\s*(?:\{([^}]*)\})?`)
	matcher     = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"`)
	grouping    = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	labelValues = regexp.MustCompile(`label_values\(\s*(goldcard_[a-z0-9_]+)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)`)
	aggregation = regexp.MustCompile(`\b(sum|min|max|avg|count|count_values|group|topk|bottomk|quantile|stddev|stdvar)\s*(\(|by\b|without\b)`)
	labelInText = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
)

// groupings returns the labels of a query's clauses of one kind (by,
// without, on...).
func groupings(expr, kind string) []string {
	var out []string
	for _, m := range grouping.FindAllStringSubmatch(expr, -1) {
		if m[1] != kind {
			continue
		}
		for l := range strings.SplitSeq(m[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}

func groupedBy(expr, label string) bool { return slices.Contains(groupings(expr, "by"), label) }

// resolve returns the family a series name in a query belongs to: itself,
// or a histogram's for its _bucket, _count and _sum series.
func resolve(fams map[string]*switchtest.Family, name string) (*switchtest.Family, error) {
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		base, ok := strings.CutSuffix(name, suffix)
		if f := fams[base]; ok && f != nil {
			if f.Kind != "histogram" && (suffix == "_bucket" || f.Kind != "summary") {
				return nil, fmt.Errorf("%s: %s is a %s, not a histogram", name, base, f.Kind)
			}
			return f, nil
		}
	}
	f := fams[name]
	switch {
	case f == nil:
		return nil, fmt.Errorf("%s is not exposed", name)
	case f.Kind == "histogram" || f.Kind == "summary":
		return nil, fmt.Errorf("%s is a %s: query its _bucket, _count or _sum series", name, f.Kind)
	}
	return f, nil
}

// targetLabels are added by Prometheus at scrape time.
var targetLabels = []string{"instance", "job"}

// checkQuery fails for every metric a query uses that the switch does not
// expose, and every label it matches or groups on that those metrics lack.
func checkQuery(t *testing.T, fams map[string]*switchtest.Family, q query) {
	t.Helper()
	known := map[string]bool{}
	for _, l := range targetLabels {
		known[l] = true
	}
	for _, m := range selector.FindAllStringSubmatch(q.expr, -1) {
		f, err := resolve(fams, m[1])
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		has := maps.Clone(f.Labels)
		if strings.HasSuffix(m[1], "_bucket") {
			has["le"] = nil
		}
		for l := range has {
			known[l] = true
		}
		for _, mm := range matcher.FindAllStringSubmatch(m[2], -1) {
			if _, ok := has[mm[1]]; !ok && mm[1] != "__name__" {
				t.Errorf("%s: %s has no label %q", q.where, m[1], mm[1])
			}
		}
	}
	for _, m := range grouping.FindAllStringSubmatch(q.expr, -1) {
		for _, l := range groupings(m[0], m[1]) {
			if !known[l] {
				t.Errorf("%s: %s (%s): no metric of the query has label %q", q.where, m[1], m[2], l)
			}
		}
	}
	for _, m := range labelValues.FindAllStringSubmatch(q.expr, -1) {
		if f := fams[m[1]]; f != nil && f.Labels[m[2]] == nil {
			t.Errorf("%s: %s has no label %q", q.where, m[1], m[2])
		}
	}
}

// alertLabels are the labels an alert's expr leaves on its series, as far
// as its aggregations tell.
func alertLabels(fams map[string]*switchtest.Family, expr string) map[string]bool {
	metricLabels := map[string]bool{}
	for _, l := range targetLabels {
		metricLabels[l] = true
	}
	for _, m := range metricRef.FindAllString(expr, -1) {
		if f, err := resolve(fams, m); err == nil {
			for l := range f.Labels {
				metricLabels[l] = true
			}
		}
	}
	out := map[string]bool{}
	if !aggregation.MatchString(expr) {
		out = metricLabels
	}
	for _, l := range groupings(expr, "by") {
		out[l] = true
	}
	if without := groupings(expr, "without"); len(without) > 0 {
		for l := range metricLabels {
			out[l] = !slices.Contains(without, l)
		}
	}
	delete(out, "le")
	return out
}

// promisedMetrics are the metric families the switch promises its
// operators, with their types.
var promisedMetrics = []struct{ name, kind string }{
	{"goldcard_requests_total", "counter"},
	{"goldcard_request_duration_seconds", "histogram"},
	{"goldcard_requests_in_flight", "gauge"},
	{"goldcard_connections", "gauge"},
	{"goldcard_frames_total", "counter"},
	{"goldcard_bytes_total", "counter"},
	{"goldcard_unpack_errors_total", "counter"},
	{"goldcard_limit_breaches_total", "counter"},
	{"goldcard_ledger_transaction_seconds", "histogram"},
	{"goldcard_db_connections", "gauge"},
	{"goldcard_db_acquires_total", "counter"},
	{"goldcard_redemptions_total", "counter"},
	{"goldcard_redemption_duration_seconds", "histogram"},
	{"goldcard_deadline_misses_total", "counter"},
	{"goldcard_lock_wait_seconds", "histogram"},
	{"goldcard_config_revision", "gauge"},
	{"goldcard_config_apply_seconds", "histogram"},
	{"goldcard_timer_lateness_seconds", "histogram"},
	{"goldcard_timer_pending", "gauge"},
	{"goldcard_timer_retries_total", "counter"},
	{"goldcard_timer_dead", "gauge"},
	{"goldcard_timer_dead_total", "counter"},
	{"goldcard_build_info", "gauge"},
	{"goldcard_postgres_up", "gauge"},
	{"goldcard_etcd_up", "gauge"},
	{"goldcard_recon_cases_open", "gauge"},
	{"goldcard_recon_case_oldest_open_seconds", "gauge"},
}

func shanghai(t *testing.T) *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// startSmokeSwitch runs a switch in this process with card locks and the
// timer's election on an embedded etcd.
func startSmokeSwitch(t *testing.T) (*daemon.Switch, *ledger.Ledger) {
	t.Helper()
	client := etcdtest.New(t, 1).Client()
	opts := locks.Options{TTL: 2 * time.Second}
	locker := locks.New(client, opts)
	t.Cleanup(func() { _ = locker.Close() })
	election := locks.NewElection(client, opts, "timer", "smoke")
	return switchtest.StartServerWith(t, daemon.Parts{Locker: locker, Elect: election.Run, TaskClaim: 4 * time.Second})
}

// Cards of the smoke run.
const (
	smokeRich  = "6228480000000801" // cash and a large fund position
	smokePoor  = "6228480000000802" // a little cash, no fund
	smokeShort = "6228480000000803" // a little cash, debits covered from its fund
)

// smokeRun drives a switch through the paths its metrics count: sign-on,
// approved and declined debits, a shortfall redeemed from the fund, one
// refused for the quota, a frame with a field that cannot be unpacked and
// one with bytes after its last field.
func smokeRun(t *testing.T, srv *daemon.Switch, l *ledger.Ledger) {
	t.Helper()
	ctx := context.Background()
	for _, c := range []ledger.NewCard{
		{PAN: smokeRich, Currency: "156", Balance: 100000, FundBalance: 2000000},
		{PAN: smokePoor, Currency: "156", Balance: 1000},
		{PAN: smokeShort, Currency: "156", Balance: 1000, FundBalance: 500000},
	} {
		if _, err := l.CreateCard(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	addr := srv.BankAddr("default").String()
	bank := switchtest.ConnectBank(t, addr)
	signOn := map[int]string{70: "001", 2: "", 32: "", 37: "", 41: "", 42: "", 49: ""}
	switchtest.WantCode(t, bank.Send("0800", bank.Fields(signOn)), "00")
	debit := func(pan, amount string) map[int]string {
		return bank.Send("0200", bank.Fields(map[int]string{2: pan, 3: "000000", 4: amount}))
	}
	switchtest.WantCode(t, debit(smokeRich, "000000001000"), "00")
	switchtest.WantCode(t, debit(smokePoor, "000000005000"), "51")
	switchtest.WantCode(t, debit(smokeShort, "000000005000"), "00") // 4,000 redeemed
	switchtest.WantCode(t, debit(smokeRich, "000001500000"), "61")  // 1,401,000 short: over the day's quota
	switchtest.WantCode(t, bank.Send("0100", bank.Fields(map[int]string{2: smokeRich, 3: "310000"})), "00")

	raw := switchtest.DialRaw(t, addr)
	broken := []byte("0200" + "7000000000000000" + "16622848000000000" + "1") // DE3 cut short
	if r := raw.RoundTrip(t, broken); !bytes.HasPrefix(r, []byte("0210")) {
		t.Fatalf("a frame that cannot be unpacked answered with %q", r)
	}
	stray := append(switchtest.EchoFrame(t, 7), "ABCD"...) // bytes after DE70
	if r := raw.RoundTrip(t, stray); !bytes.HasPrefix(r, []byte("0810")) {
		t.Fatalf("an 0800 with stray bytes answered with %q", r)
	}
	// A settlement file with none of the day's debits: each is a case,
	// and the open cases' gauges are exposed.
	day := time.Now().In(shanghai(t)).Format(time.DateOnly)
	resp, err := http.Post("http://"+srv.AdminAddr().String()+"/v1/reconciliations/bank?bank=default&date="+day+"&format=csv",
		"text/csv", strings.NewReader(strings.Join(config.BankReconFields, ",")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest { // the operator is not named
		t.Fatalf("an anonymous reconciliation answered %s", resp.Status)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+srv.AdminAddr().String()+"/v1/reconciliations/bank?bank=default&date="+day,
		strings.NewReader(strings.Join(config.BankReconFields, ",")+"\n"))
	req.Header.Set("Goldcard-Operator", "smoke")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reconciling an empty settlement file: %s", resp.Status)
	}
	switchtest.WaitFor(t, "a timer task to fire", func() bool {
		f := switchtest.Scrape(t, srv.AdminAddr().String())["goldcard_timer_lateness_seconds"]
		return f != nil && len(f.Series) > 0
	})
}

// TestOpsMetricsAfterSmokeRun checks, after a smoke run, that every
// promised metric is exposed, that the dashboard and alert rules use only
// exposed metrics and labels, and that labels stay bounded and free of
// card numbers.
func TestOpsMetricsAfterSmokeRun(t *testing.T) {
	t.Parallel()
	srv, l := startSmokeSwitch(t)
	smokeRun(t, srv, l)
	fams := switchtest.Scrape(t, srv.AdminAddr().String())

	t.Run("promised", func(t *testing.T) {
		for _, p := range promisedMetrics {
			switch f := fams[p.name]; {
			case f == nil:
				t.Errorf("%s is not exposed", p.name)
			case f.Kind != p.kind:
				t.Errorf("%s is a %s, want a %s", p.name, f.Kind, p.kind)
			}
		}
		if bi := fams["goldcard_build_info"]; bi != nil {
			for _, l := range []string{"version", "commit", "goversion"} {
				if bi.Labels[l] == nil {
					t.Errorf("goldcard_build_info has no %s label", l)
				}
			}
		}
	})

	t.Run("smoke run counted", func(t *testing.T) {
		for _, w := range []struct {
			name   string
			labels map[string]string
		}{
			{"goldcard_connections", map[string]string{"bank": "default", "state": "signed_on"}},
			{"goldcard_requests_total", map[string]string{"bank": "default", "mti": "0200", "response_code": "51"}},
			{"goldcard_redemptions_total", map[string]string{"bank": "default", "purpose": "shortfall", "result": "confirmed"}},
			{"goldcard_quota_rejections_total", map[string]string{"bank": "default"}},
			{"goldcard_unpack_errors_total", map[string]string{"bank": "default", "reason": metric.UnpackField}},
			{"goldcard_unpack_errors_total", map[string]string{"bank": "default", "reason": metric.UnpackTrailing}},
			{"goldcard_lock_wait_seconds", nil},
			{"goldcard_timer_leader", nil},
			{"goldcard_etcd_up", nil},
			{"goldcard_postgres_up", nil},
		} {
			if sum := switchtest.Total(fams[w.name], w.labels); sum < 1 {
				t.Errorf("%s%v = %v after the smoke run, want at least 1", w.name, w.labels, sum)
			}
		}
	})

	dash, rules := readDashboard(t), readRules(t)
	t.Run("dashboard", func(t *testing.T) {
		for _, q := range dash.queries() {
			checkQuery(t, fams, q)
		}
		for _, p := range dash.allPanels() {
			checkNamed(t, fams, "panel "+p.Title, p.Description)
		}
	})
	t.Run("alerts", func(t *testing.T) {
		for _, r := range rules.rules() {
			checkQuery(t, fams, query{"alert " + r.Alert, r.Expr})
			has := alertLabels(fams, r.Expr)
			for _, text := range r.Annotations {
				checkNamed(t, fams, "alert "+r.Alert, text)
				for _, m := range labelInText.FindAllStringSubmatch(text, -1) {
					if !has[m[1]] {
						t.Errorf("alert %s: annotation uses $labels.%s, which its expr does not keep", r.Alert, m[1])
					}
				}
			}
		}
	})

	t.Run("labels bounded", func(t *testing.T) {
		digits := regexp.MustCompile(`^[0-9]{6,}$`)
		for name, f := range fams {
			for l, values := range f.Labels {
				if len(values) > 32 {
					t.Errorf("%s{%s}: %d values; labels must be bounded", name, l, len(values))
				}
				for v := range values {
					if digits.MatchString(v) || strings.Contains(v, "62284800000008") {
						t.Errorf("%s{%s}: a value of %d digits looks like a PAN, STAN or RRN", name, l, len(v))
					}
				}
			}
		}
	})
}

// checkNamed fails for metrics named in prose that the switch does not
// expose.
func checkNamed(t *testing.T, fams map[string]*switchtest.Family, where, text string) {
	t.Helper()
	for _, m := range metricRef.FindAllString(text, -1) {
		if _, err := resolve(fams, m); err != nil {
			t.Errorf("%s: %v", where, err)
		}
	}
}
