package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

func TestMain(m *testing.M) { switchtest.Main(m) }

// reconcile runs the CLI on a file of lines and returns what it printed
// (stdout, decoded when it is JSON), what it said on stderr and its exit
// status.
func reconcile(t *testing.T, d *switchtest.Switch, operator, date string, lines []string, extra ...string) (result, string, int) {
	t.Helper()
	return reconcileCLI(t, d, operator, lines, append([]string{"bank", "--bank", "default", "--date", date}, extra...)...)
}

func reconcileCLI(t *testing.T, d *switchtest.Switch, operator string, lines []string, sub ...string) (result, string, int) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "daily.csv")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{"reconcile"}, sub...), "--admin", d.Admin, "--json")
	cmd := exec.Command(switchtest.Binary(t), append(args, file)...)
	cmd.Env = append(os.Environ(), "GOLDCARD_OPERATOR="+operator)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var r result
	if stdout.Len() > 0 {
		if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
			t.Fatalf("--json printed %q: %v", stdout.String(), err)
		}
	}
	return r, stderr.String(), code
}

const header = "acquirer,terminal,stan,rrn,transmitted,mti,processing_code,amount,currency,response_code\n"

// row is a settlement row for a request the bank sent, standing at amount.
func row(f map[int]string, amount int64) string {
	return fmt.Sprintf("%s,%s,%s,%s,%s,0200,%s,%d,156,00\n", f[32], f[41], f[11], f[37], f[7], f[3], amount)
}

// TestReconcileBank is the daily reconciliation as a bank and an
// operator go through it, against a real switch and PostgreSQL: approved
// debits, one reversed, one partly reversed; the bank's clean file
// reconciles; a file with a row missing, a row the switch never saw and
// an amount changed counts one of each, twice the same; adjustments close
// cases (one at once, one with a second operator's approval), a write-off
// the last, and the card and the ledger's audit agree; bad files are
// refused with their line and record nothing.
func TestReconcileBank(t *testing.T) {
	t.Parallel()
	d := switchtest.Start(t)
	const pan = "6228480000007701"
	d.AddCard(pan, 500000, 0) // 5,000.00
	card := d.CardID(pan)
	bank := switchtest.ConnectBank(t, d.Bank)
	// The bank settles everything of the test tomorrow (DE15): the dates
	// hold wherever midnight in Shanghai falls while it runs.
	sh, _ := time.LoadLocation("Asia/Shanghai")
	settle := time.Now().In(sh).AddDate(0, 0, 1)
	date := settle.Format(time.DateOnly)
	debit := func(amount string) map[int]string {
		f := bank.Fields(map[int]string{2: pan, 3: "000000", 4: amount, 15: settle.Format("0102")})
		switchtest.WantCode(t, bank.Send("0200", f), "00")
		return f
	}
	a, b, c, p := debit("000000010000"), debit("000000005000"), debit("000000003000"), debit("000000008000")
	switchtest.WantCode(t, bank.Send("0400", c), "00") // c reversed in full
	partial := map[int]string{}
	for k, v := range p {
		partial[k] = v
	}
	partial[95] = "000000002000" + "000000002000" + "D00000000" + "D00000000" // 20.00 of p stands
	switchtest.WantCode(t, bank.Send("0400", partial), "00")
	declined := bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000099999999", 15: settle.Format("0102")})
	switchtest.WantCode(t, bank.Send("0200", declined), "51")
	balance := int64(500000 - 10000 - 5000 - 2000)

	var totals struct {
		Totals []struct {
			MTIClass string `json:"mti_class"`
			TxnType  string `json:"txn_type"`
			Count    int64  `json:"count"`
			Amount   int64  `json:"amount"`
			Reversed int64  `json:"reversed"`
		} `json:"totals"`
	}
	if st := d.API("GET", "/v1/banks/default/totals?date="+date, nil, &totals); st != http.StatusOK || len(totals.Totals) != 1 ||
		totals.Totals[0].Count != 3 || totals.Totals[0].Amount != 17000 || totals.Totals[0].Reversed != 1 {
		t.Fatalf("totals: HTTP %d %+v; want 3 purchases standing at 170.00, one reversed", st, totals)
	}

	// A request that says another settlement date (DE15) belongs to it.
	next := settle.AddDate(0, 0, 1)
	switchtest.WantCode(t, bank.Send("0200", bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000000100", 15: next.Format("0102")})), "00")
	balance -= 100
	if st := d.API("GET", "/v1/banks/default/totals?date="+next.Format(time.DateOnly), nil, &totals); st != http.StatusOK ||
		len(totals.Totals) != 1 || totals.Totals[0].Count != 1 || totals.Totals[0].Amount != 100 {
		t.Fatalf("totals of the date DE15 gave: HTTP %d %+v", st, totals)
	}

	clean := []string{header, row(a, 10000), row(b, 5000), row(p, 2000)}
	r, stderr, code := reconcile(t, d, "li.wei", date, clean)
	if code != 0 || r.Matched != 3 || r.MissingHere+r.MissingThere+r.AmountMismatch != 0 || len(r.Cases) != 0 {
		t.Fatalf("the clean file: exit %d %+v %s", code, r, stderr)
	}

	// The same file as a bank's fixed-width GBK file, in a format of the
	// config center's: nothing in the switch changes.
	format := `{"source":"bank","layout":"fixed","encoding":"gbk","skip_lines":1,"trailer_prefix":"合计","amount":"decimal",
		"fields":[{"name":"acquirer","start":1,"width":11},{"name":"terminal","start":12,"width":8},{"name":"stan","start":20,"width":6},
		{"name":"rrn","start":26,"width":12},{"name":"transmitted","start":38,"width":10},{"name":"amount","start":58,"width":12},
		{"name":"currency","start":70,"width":3}]}`
	if out, err := switchtest.CLI(t, format, "config", "put", "recon_formats/acme-fixed", "-", "--etcd", d.Etcd); err != nil {
		t.Fatalf("config put: %v\n%s", err, out)
	}
	fixed := func(f map[int]string, amount int64) string {
		// The merchant's name takes 10 bytes in GBK: four characters of
		// two bytes, two spaces.
		return fmt.Sprintf("%011s%-8s%6s%12s%10s%s%12s156\n", f[32], f[41], f[11], f[37], f[7], "北京分行  ", fmt.Sprintf("%d.%02d", amount/100, amount%100))
	}
	gbk, err := simplifiedchinese.GBK.NewEncoder().String("交易明细 " + date + "\n" + fixed(a, 10000) + fixed(b, 5000) + fixed(p, 2000) + "合计 3\n")
	if err != nil {
		t.Fatal(err)
	}
	r, stderr, code = reconcile(t, d, "li.wei", date, []string{gbk}, "--format", "acme-fixed")
	if code != 0 || r.Matched != 3 || r.Rows != 3 {
		t.Fatalf("the fixed-width GBK file: exit %d %+v %s", code, r, stderr)
	}

	stranger := map[int]string{32: "1234", 41: "ATM00009", 11: "999999", 37: "000000999999", 7: a[7], 3: "000000"}
	broken := []string{header, row(a, 10100), row(p, 2000), row(stranger, 200000)} // b missing, a changed, one never seen
	var first result
	for i := range 2 {
		r, stderr, code = reconcile(t, d, "li.wei", date, broken)
		if code != 1 || r.Matched != 1 || r.MissingHere != 1 || r.MissingThere != 1 || r.AmountMismatch != 1 || r.Open != 3 || len(r.Cases) != 3 {
			t.Fatalf("the broken file, run %d: exit %d %+v %s", i+1, code, r, stderr)
		}
		if !strings.Contains(stderr, "3 cases open") {
			t.Errorf("stderr %q does not say what is open", stderr)
		}
		if i == 0 {
			first = r
		} else if x, y := mustJSON(t, first.Cases), mustJSON(t, r.Cases); x != y {
			t.Fatalf("running the file again changed its cases:\n%+v\n%+v", first.Cases, r.Cases)
		}
	}
	cases := map[string]int64{}
	for _, k := range r.Cases {
		cases[k.Kind] = k.ID
		if k.Kind != "missing_here" && k.Card != card {
			t.Errorf("case %+v does not name the card", k)
		}
	}

	type adjustment struct {
		ID    int64  `json:"id"`
		State string `json:"state"`
	}
	adjust := func(operator string, id int64, body map[string]any, want int) adjustment {
		t.Helper()
		var out adjustment
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(context.Background(), "POST", "http://"+d.Admin+fmt.Sprintf("/v1/cases/%d/adjust", id), bytes.NewReader(raw))
		req.Header.Set("Goldcard-Operator", operator)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != want {
			var e map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&e)
			t.Fatalf("adjusting case %d: HTTP %d %v, want %d", id, resp.StatusCode, e, want)
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	post := func(operator, path string, want int) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+d.Admin+path, strings.NewReader(`{"reason":"agreed with the bank"}`))
		req.Header.Set("Goldcard-Operator", operator)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s by %s: HTTP %d, want %d", path, operator, resp.StatusCode, want)
		}
	}
	// No adjustment moves more than its case puts at stake.
	adjust("li.wei", cases["missing_there"], map[string]any{"debit": "settlement", "credit": "cash", "amount": 5001,
		"reason": "more than the break"}, http.StatusBadRequest)
	// b: the ledger debited the card, the bank never settled: give it
	// back (within one operator's limit, posted at once).
	if got := adjust("li.wei", cases["missing_there"], map[string]any{"debit": "settlement", "credit": "cash", "amount": 5000,
		"reason": "not settled by the bank"}, http.StatusCreated); got.State != "posted" {
		t.Fatalf("adjustment %+v", got)
	}
	balance += 5000
	// The stranger: the bank settled 2,000.00 the ledger never posted.
	// Above the four-eyes amount: it waits for a second operator.
	bad := adjust("li.wei", cases["missing_here"], map[string]any{"card": card, "debit": "cash", "credit": "settlement",
		"amount": 200000, "reason": "settled by the bank, lost here"}, http.StatusAccepted)
	if bad.State != "pending" {
		t.Fatalf("adjustment %+v", bad)
	}
	if got := d.Card(pan); got.Balance != balance {
		t.Fatalf("balance %d before approval, want %d", got.Balance, balance)
	}
	post("li.wei", fmt.Sprintf("/v1/adjustments/%d/approve", bad.ID), http.StatusForbidden) // one's own
	post("wang.fang", fmt.Sprintf("/v1/adjustments/%d/approve", bad.ID), http.StatusOK)
	post("wang.fang", fmt.Sprintf("/v1/adjustments/%d/approve", bad.ID), http.StatusNotFound) // once
	balance -= 200000
	adjust("li.wei", cases["missing_there"], map[string]any{"debit": "settlement", "credit": "cash", "amount": 5000,
		"reason": "again"}, http.StatusConflict) // the case is closed
	if got := d.Card(pan); got.Balance != balance {
		t.Fatalf("balance %d after the adjustments, want %d", got.Balance, balance)
	}
	r, _, code = reconcile(t, d, "li.wei", date, broken)
	if code != 1 || r.Open != 1 {
		t.Fatalf("after two adjustments: exit %d %+v", code, r)
	}
	post("li.wei", fmt.Sprintf("/v1/cases/%d/write-off", cases["amount_mismatch"]), http.StatusOK)
	r, stderr, code = reconcile(t, d, "li.wei", date, broken)
	if code != 0 || r.Open != 0 || len(r.Cases) != 3 {
		t.Fatalf("every case worked: exit %d %+v %s", code, r, stderr)
	}

	// A write-off of more than one operator may close is asked for by
	// one and made by another.
	nextDay := next.Format(time.DateOnly)
	r, _, _ = reconcile(t, d, "li.wei", nextDay, []string{header, row(stranger, 300000)})
	var big int64
	for _, k := range r.Cases {
		if k.Kind == "missing_here" {
			big = k.ID
		}
	}
	if big == 0 {
		t.Fatalf("no case for the stranger of %s: %+v", nextDay, r)
	}
	post("li.wei", fmt.Sprintf("/v1/cases/%d/write-off", big), http.StatusAccepted)
	post("li.wei", fmt.Sprintf("/v1/cases/%d/write-off", big), http.StatusConflict)
	post("wang.fang", fmt.Sprintf("/v1/cases/%d/write-off", big), http.StatusOK)

	for _, q := range []string{"state=opne", "kind=missing-here", "source=Bank"} {
		if st := d.API("GET", "/v1/cases?"+q, nil, nil); st != http.StatusBadRequest {
			t.Errorf("cases?%s: HTTP %d, want 400", q, st)
		}
	}

	// Bad files: refused with the line, nothing recorded.
	var before struct {
		Cases []json.RawMessage `json:"cases"`
	}
	d.API("GET", "/v1/cases", nil, &before)
	for _, bad := range []struct {
		name  string
		lines []string
		want  string
	}{
		{"wrong header", []string{"acquirer,terminal,stan\n", row(a, 10000)}, "line 1"},
		{"bad amount", []string{header, row(a, 10000), strings.Replace(row(b, 5000), ",5000,", ",50.00,", 1)}, "line 3: amount"},
		{"short row", []string{header, row(a, 10000), "1234,ATM00001\n"}, "line 3"},
		{"empty", nil, "empty"},
	} {
		r, stderr, code := reconcile(t, d, "li.wei", date, bad.lines)
		if code != 1 || r.Run != 0 || !strings.Contains(stderr, bad.want) || !strings.Contains(stderr, "nothing was reconciled") {
			t.Errorf("%s: exit %d %+v, stderr %q, want %q", bad.name, code, r, stderr, bad.want)
		}
	}
	var after struct {
		Cases []json.RawMessage `json:"cases"`
	}
	d.API("GET", "/v1/cases", nil, &after)
	if len(after.Cases) != len(before.Cases) {
		t.Fatalf("a refused file changed the cases: %d, then %d", len(before.Cases), len(after.Cases))
	}
	if _, stderr, code := reconcile(t, d, "li.wei", "2026-13-01", clean); code != 2 || !strings.Contains(stderr, "--date") {
		t.Errorf("a bad date: exit %d %q", code, stderr)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReconcileFund: a redemption the switch left pending (the fund
// company did not answer within the bank's time) is settled by the fund
// company's file that confirms it, as its follow-up would have settled
// it; a file with its amount wrong settles nothing and opens a case, as
// does an order the switch never placed; the corrected file closes both.
func TestReconcileFund(t *testing.T) {
	t.Parallel()
	d := switchtest.Start(t, "--fund-latency", "1h", "--auth-timeout", "4s")
	const pan = "6228480000007801"
	d.AddCard(pan, 1000, 500000) // 10.00 cash, 5,000.00 in the fund
	bank := switchtest.ConnectBank(t, d.Bank)
	f := bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000005000"}) // 40.00 short
	switchtest.WantCode(t, bank.Send("0200", f), "91")
	orders := d.CardOrders(pan)
	if len(orders) != 1 || orders[0].State != "pending" {
		t.Fatalf("orders %+v, want one pending", orders)
	}
	o := orders[0]
	date := o.QuotaDay.Format(time.DateOnly)
	const header = "order_id,kind,amount,currency,status,trade_date\n"
	line := func(id string, amount int64) string {
		return fmt.Sprintf("%s,redemption,%d,156,confirmed,%s\n", id, amount, date)
	}
	// An order id the switch never placed, with a card number's digits
	// in it, is shown masked.
	const panLike = "6222021234567890123"
	wrong := []string{header, line(o.ID, o.Amount+1), line(panLike, 700)}
	r, stderr, code := reconcileCLI(t, d, "li.wei", wrong, "fund", "--date", date)
	if code != 1 || r.AmountMismatch != 1 || r.MissingHere != 1 || r.Settled != 0 || r.Matched != 0 || r.Open != 2 {
		t.Fatalf("the wrong file: exit %d %+v %s", code, r, stderr)
	}
	if strings.Contains(mustJSON(t, r), panLike) {
		t.Fatalf("a card number in an order id is shown whole: %+v", r.Cases)
	}
	if got := d.CardOrders(pan); got[0].State != "pending" {
		t.Fatalf("a file at another amount settled the order: %+v", got[0])
	}
	before := d.Card(pan)
	r, stderr, code = reconcileCLI(t, d, "li.wei", []string{header, line(o.ID, o.Amount)}, "fund", "--date", date)
	if code != 0 || r.Settled != 1 || r.Matched != 1 || r.Open != 0 || len(r.Cases) != 0 {
		t.Fatalf("the corrected file: exit %d %+v %s", code, r, stderr)
	}
	if got := d.CardOrders(pan); got[0].State != "confirmed" {
		t.Fatalf("the order the fund company confirmed is %s", got[0].State)
	}
	after := d.Card(pan)
	// The shares left the fund when the order was placed; its cash comes
	// in once confirmed.
	if after.FundBalance != before.FundBalance || after.Balance != before.Balance+o.Amount {
		t.Fatalf("card before %+v, after %+v: the redemption of %d did not land in cash", before, after, o.Amount)
	}
	var closed struct {
		Cases []struct {
			State string `json:"state"`
		} `json:"cases"`
	}
	d.API("GET", "/v1/cases?source=fund", nil, &closed)
	if len(closed.Cases) != 2 || closed.Cases[0].State != "matched" || closed.Cases[1].State != "matched" {
		t.Fatalf("the wrong file's cases after the corrected one: %+v", closed)
	}
}

// TestReconcileEdges: what a settlement file nets and signs, against a
// real switch: a refund is a credit and never matches a purchase of the
// same amount; an 0120 advice posts and is settled; a reversal on a later
// business date than its original is a row of its own date, and leaves
// the original's date as it was; a case adjusted that a corrected file no
// longer has is marked for review, and the run exits 1.
func TestReconcileEdges(t *testing.T) {
	t.Parallel()
	d := switchtest.Start(t)
	const pan = "6228480000007901"
	d.AddCard(pan, 500000, 0)
	bank := switchtest.ConnectBank(t, d.Bank)
	// Dates by DE15, which hold wherever midnight in Shanghai falls while
	// the test runs: the day's requests settle tomorrow, the earlier
	// posting today.
	sh, _ := time.LoadLocation("Asia/Shanghai")
	today := time.Now().In(sh)
	settle, yesterday := today.AddDate(0, 0, 1), today
	date := settle.Format(time.DateOnly)
	send := func(mti string, f map[int]string) map[int]string {
		switchtest.WantCode(t, bank.Send(mti, f), "00")
		return f
	}
	on := func(f map[int]string) map[int]string { f[15] = settle.Format("0102"); return f }
	purchase := send("0200", on(bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000010000"})))
	refund := send("0200", on(bank.Fields(map[int]string{2: pan, 3: "200000", 4: "000000003000"})))
	advice := send("0120", on(bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000001000"})))
	// A balance inquiry carries an amount and moves none: never a row, on
	// either side.
	inquiry := send("0200", on(bank.Fields(map[int]string{2: pan, 3: "310000", 4: "000000090000"})))
	// Settled a day before, reversed on the day.
	old := send("0200", bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000002000", 15: yesterday.Format("0102")}))
	rev := map[int]string{}
	for k, v := range old {
		rev[k] = v
	}
	send("0400", on(rev))

	clean := []string{header, row(purchase, 10000), row(refund, 3000), strings.Replace(row(advice, 1000), ",0200,", ",0120,", 1),
		strings.Replace(row(rev, 2000), ",0200,", ",0400,", 1)}
	r, stderr, code := reconcile(t, d, "li.wei", date, clean)
	if code != 0 || r.Matched != 4 || len(r.Cases) != 0 {
		t.Fatalf("today's clean file: exit %d %+v %s", code, r, stderr)
	}
	r, stderr, code = reconcile(t, d, "li.wei", date, append(clean[:len(clean):len(clean)], row(inquiry, 90000)))
	if code != 0 || r.Matched != 4 || len(r.Cases) != 0 {
		t.Fatalf("the bank's file listing the balance inquiry: exit %d %+v %s", code, r, stderr)
	}
	r, stderr, code = reconcile(t, d, "li.wei", yesterday.Format(time.DateOnly), []string{header, row(old, 2000)})
	if code != 0 || r.Matched != 1 {
		t.Fatalf("yesterday's file, its debit reversed today: exit %d %+v %s", code, r, stderr)
	}
	// The refund written as a purchase: a break of twice its amount.
	asPurchase := []string{header, row(purchase, 10000), strings.Replace(row(refund, 3000), ",200000,", ",000000,", 1),
		clean[3], clean[4]}
	r, _, code = reconcile(t, d, "li.wei", date, asPurchase)
	if code != 1 || r.AmountMismatch != 1 || r.Cases[0].Ours == nil || *r.Cases[0].Ours != -3000 || *r.Cases[0].Theirs != 3000 {
		t.Fatalf("a refund filed as a purchase: exit %d %+v", code, r)
	}
	// A row the bank declined settled nothing: the purchase is missing
	// there.
	declined := []string{header, strings.Replace(row(purchase, 10000), ",00\n", ",05\n", 1), clean[2], clean[3], clean[4]}
	r, _, code = reconcile(t, d, "li.wei", date, declined)
	if code != 1 || r.Matched != 3 || r.MissingThere != 1 || r.MissingHere != 0 {
		t.Fatalf("a declined row: exit %d %+v", code, r)
	}
	// The bank says 101.00; an operator takes the 1.00 from the card; the
	// bank's corrected file says 100.00 after all.
	wrong := []string{header, row(purchase, 10100), clean[2], clean[3], clean[4]}
	r, _, _ = reconcile(t, d, "li.wei", date, wrong)
	var mismatch int64
	for _, k := range r.Cases {
		if k.Kind == "amount_mismatch" && strings.Contains(k.Ident, purchase[11]) {
			mismatch = k.ID
		}
	}
	if mismatch == 0 {
		t.Fatalf("no case for 101.00: %+v", r)
	}
	body, _ := json.Marshal(map[string]any{"debit": "cash", "credit": "settlement", "amount": 100, "reason": "the bank settled 101.00"})
	req, _ := http.NewRequest("POST", "http://"+d.Admin+fmt.Sprintf("/v1/cases/%d/adjust", mismatch), bytes.NewReader(body))
	req.Header.Set("Goldcard-Operator", "li.wei")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("adjusting: %s", resp.Status)
	}
	// Then 102.00: what was adjusted on the purchase already counts
	// against the new case's stake of 2.00.
	r, _, _ = reconcile(t, d, "li.wei", date, []string{header, row(purchase, 10200), clean[2], clean[3], clean[4]})
	var again int64
	for _, k := range r.Cases {
		if k.Kind == "amount_mismatch" && k.State == "open" {
			again = k.ID
		}
	}
	for _, c := range []struct {
		amount int64
		want   int
	}{{150, http.StatusBadRequest}, {100, http.StatusCreated}} {
		amount, want := c.amount, c.want
		body, _ := json.Marshal(map[string]any{"debit": "cash", "credit": "settlement", "amount": amount, "reason": "the bank settled 102.00"})
		req, _ := http.NewRequest("POST", "http://"+d.Admin+fmt.Sprintf("/v1/cases/%d/adjust", again), bytes.NewReader(body))
		req.Header.Set("Goldcard-Operator", "li.wei")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("adjusting %d of a stake of 200 with 100 adjusted: %s, want %d", amount, resp.Status, want)
		}
	}
	r, stderr, code = reconcile(t, d, "li.wei", date, clean)
	if code != 1 || r.Review != 2 || r.Open != 0 || !strings.Contains(stderr, "review") {
		t.Fatalf("the corrected file after an adjustment: exit %d %+v %s", code, r, stderr)
	}
	reviewed := false
	for _, k := range r.Cases {
		reviewed = reviewed || (k.ID == mismatch && k.State == "adjusted")
	}
	if !reviewed {
		t.Fatalf("the adjusted case is not listed for review: %+v", r.Cases)
	}
}
