package issuer_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// exceptionList reads GET /v1/exceptions.
type exceptionList struct {
	Exceptions []struct {
		ID       int64  `json:"id"`
		Kind     string `json:"kind"`
		PAN      string `json:"pan"`
		Currency string `json:"currency"`
		Amount   int64  `json:"amount"`
		MTI      string `json:"mti"`
		Detail   string `json:"detail"`
	} `json:"exceptions"`
}

// TestForeignCurrencyNeverPosted: advices, completions and reversals in a
// currency the card does not hold are acknowledged with 13 and post
// nothing (there is no exchange); each becomes an exception an operator
// sees in the admin API, the metrics and the log.
func TestForeignCurrencyNeverPosted(t *testing.T) {
	t.Parallel()
	d := switchtest.Start(t)
	bank := switchtest.ConnectBank(t, d.Bank)
	const pan = "6228480000009401"
	d.AddCard(pan, 100000, 0)
	de90 := func(mti string, f map[int]string) string {
		return mti + f[11] + f[7] + fmt.Sprintf("%011s", f[32]) + "00000000000"
	}

	r := bank.Send("0220", bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000005000", 49: "840"}))
	switchtest.WantCode(t, r, "13")
	switchtest.WantCard(t, d, pan, r, 100000, 100000, 0)
	switchtest.WantCode(t, bank.Send("0220", bank.Fields(map[int]string{2: pan, 3: "200000", 4: "000000005000", 49: "392"})), "13")
	switchtest.WantCode(t, bank.Send("0120", bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000000700", 49: "840"})), "13")
	// A reversal in another currency of an approved purchase in the
	// card's own moves nothing either.
	orig := bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000001000"})
	switchtest.WantCode(t, bank.Send("0200", orig), "00")
	rev := bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000001000", 49: "840", 90: de90("0200", orig)})
	switchtest.WantCode(t, bank.Send("0420", rev), "13")
	switchtest.WantCode(t, bank.Send("0421", rev), "13") // a repeat: the same answer, one exception
	switchtest.WantCard(t, d, pan, nil, 99000, 99000, 0)

	// A reversal that came first is settled by its advice even when the
	// advice is refused for its currency: it waits for nothing more.
	early := bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000000300"})
	switchtest.WantCode(t, bank.Send("0420", early), "00")
	foreign := map[int]string{}
	for k, v := range early {
		foreign[k] = v
	}
	foreign[49] = "840"
	switchtest.WantCode(t, bank.Send("0220", foreign), "13")
	switchtest.WantCode(t, bank.Send("0200", early), "00")
	switchtest.WantCard(t, d, pan, nil, 98700, 98700, 0)

	var list exceptionList
	if st := d.API("GET", "/v1/exceptions", nil, &list); st != http.StatusOK {
		t.Fatalf("exceptions: HTTP %d", st)
	}
	if len(list.Exceptions) != 5 {
		t.Fatalf("%d exceptions, want 5: %+v", len(list.Exceptions), list)
	}
	for _, e := range list.Exceptions {
		if e.Kind != "foreign_currency" || e.PAN != "622848******9401" || e.Currency == "156" {
			t.Errorf("exception %+v", e)
		}
	}
	if !strings.Contains(d.Metrics(), `goldcard_exceptions_total{bank="default",kind="foreign_currency"} 5`) {
		t.Error("the exceptions are not counted")
	}
	switchtest.WaitFor(t, "the open exceptions to be reported", func() bool {
		return strings.Contains(d.Metrics(), "goldcard_exceptions_open 5")
	})
	if !strings.Contains(d.Logs(), `"pan":"622848******9401"`) || !strings.Contains(d.Logs(), `"currency":"840"`) {
		t.Error("no log line names the exception with its masked PAN and currency")
	}
	d.AssertNoSecrets(pan)

	// An operator resolves one, saying how.
	id := list.Exceptions[0].ID
	path := fmt.Sprintf("/v1/exceptions/%d/resolve", id)
	if st := d.API("POST", path, map[string]string{"resolution": ""}, nil); st != http.StatusBadRequest {
		t.Fatalf("resolving without a note: HTTP %d", st)
	}
	if st := d.API("POST", path, map[string]string{"resolution": "bank confirmed the advice was sent in error"}, nil); st != http.StatusOK {
		t.Fatalf("resolving: HTTP %d", st)
	}
	if st := d.API("POST", path, map[string]string{"resolution": "again"}, nil); st != http.StatusNotFound {
		t.Fatalf("resolving twice: HTTP %d", st)
	}
	list = exceptionList{}
	d.API("GET", "/v1/exceptions", nil, &list)
	if len(list.Exceptions) != 4 {
		t.Fatalf("%d open exceptions after resolving one", len(list.Exceptions))
	}
}

// TestReversalsStateWhatStands: a reversal settles against its own
// original only, moves it to what it says stands and never up, and a
// reversal whose original has never been seen waits for that transaction
// alone.
func TestReversalsStateWhatStands(t *testing.T) {
	t.Parallel()
	d := switchtest.Start(t)
	bank := switchtest.ConnectBank(t, d.Bank)
	de90 := func(mti string, f map[int]string) string {
		return mti + f[11] + f[7] + fmt.Sprintf("%011s", f[32]) + "00000000000"
	}
	without := func(f map[int]string, drop ...int) map[int]string {
		out := map[int]string{}
		for k, v := range f {
			out[k] = v
		}
		for _, k := range drop {
			delete(out, k)
		}
		return out
	}

	t.Run("a reversal of a declined debit never matches a later one", func(t *testing.T) {
		const pan = "6228480000009501"
		d.AddCard(pan, 1000, 0)
		f := bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000005000", 12: "090000"})
		switchtest.WantCode(t, bank.Send("0200", f), "51")
		switchtest.WantCode(t, bank.Send("0400", f), "00")
		// A later debit with the same STAN and RRN, at another time.
		later := without(f)
		later[12], later[4] = "090500", "000000000500"
		switchtest.WantCode(t, bank.Send("0200", later), "00")
		switchtest.WantCard(t, d, pan, nil, 500, 500, 0)
	})

	t.Run("partial, then full, then again", func(t *testing.T) {
		for _, mti := range []string{"0200", "0100"} {
			pan := "62284800000096" + mti[1:3]
			d.AddCard(pan, 100000, 0)
			orig := bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000010000"})
			switchtest.WantCode(t, bank.Send(mti, orig), "00")
			held := int64(0)
			if mti == "0100" {
				held = 10000
			}
			switchtest.WantCard(t, d, pan, nil, 100000-10000+held, 90000, 0)
			// DE95: 30.00 of the 100.00 stands.
			partial := without(orig)
			partial[95] = "000000003000" + "000000003000" + "D00000000" + "D00000000"
			r := bank.Send("0400", partial)
			switchtest.WantCode(t, r, "00")
			held = min(held, 3000)
			switchtest.WantCard(t, d, pan, r, 100000-3000+held, 97000, 0)
			// A reversal saying more stands takes nothing back.
			more := without(orig)
			more[95] = "000000005000" + "000000005000" + "D00000000" + "D00000000"
			switchtest.WantCode(t, bank.Send("0420", more), "00")
			switchtest.WantCard(t, d, pan, nil, 100000-3000+held, 97000, 0)
			// The full reversal leaves nothing standing.
			r = bank.Send("0400", without(orig))
			switchtest.WantCode(t, r, "00")
			switchtest.WantCard(t, d, pan, r, 100000, 100000, 0)
			// Again, and as an advice: nothing changes.
			switchtest.WantCode(t, bank.Send("0401", without(orig)), "00")
			switchtest.WantCode(t, bank.Send("0420", without(orig)), "00")
			switchtest.WantCard(t, d, pan, nil, 100000, 100000, 0)
		}
	})

	t.Run("an early reversal waits for its own transaction only", func(t *testing.T) {
		const pan = "6228480000009701"
		d.AddCard(pan, 100000, 0)
		f := bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000005000"})
		switchtest.WantCode(t, bank.Send("0420", f), "00")
		// Same STAN and RRN, another amount: another transaction.
		other := without(f)
		other[4], other[12] = "000000004000", "111111"
		switchtest.WantCode(t, bank.Send("0200", other), "00")
		// Its own original arrives: declined, as it was reversed.
		switchtest.WantCode(t, bank.Send("0200", f), "12")
		switchtest.WantCard(t, d, pan, nil, 96000, 96000, 0)
	})

	t.Run("a reversal of a reversal's original by DE90, with the bank's DE7 stamped afresh", func(t *testing.T) {
		const pan = "6228480000009801"
		d.AddCard(pan, 100000, 0)
		orig := bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000002000", 7: "1201093000"})
		switchtest.WantCode(t, bank.Send("0200", orig), "00")
		// DE90 names a later transmission of the original.
		named := without(orig)
		named[7] = "1201093004"
		rev := bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000002000", 90: de90("0200", named)})
		switchtest.WantCode(t, bank.Send("0420", rev), "00")
		switchtest.WantCard(t, d, pan, nil, 100000, 100000, 0)
	})
}

// TestDE54Everywhere: every answer that carries DE54 computes it the same
// way, with the day's quota used, and a 94 carries it when the card is
// known.
func TestDE54Everywhere(t *testing.T) {
	t.Parallel()
	d := switchtest.Start(t)
	bank := switchtest.ConnectBank(t, d.Bank)
	const pan = "6228480000009901"
	d.AddCard(pan, 0, 2000000)
	// Uses 300.00 of the day's 10,000.00 quota.
	r := bank.Send("0200", bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000030000"}))
	switchtest.WantCode(t, r, "00")
	want := switchtest.DE54(t, r)
	if want["91/02"] != 1000000-30000 {
		t.Fatalf("DE54 redeemable after using 300.00 of the quota: %v", want)
	}
	check := func(what string, r map[int]string) {
		t.Helper()
		if _, ok := r[54]; !ok {
			t.Fatalf("%s: no DE54 in %v", what, r)
		}
		if got := switchtest.DE54(t, r); got["91/02"] != want["91/02"] || got["91/01"] != want["91/01"] {
			t.Fatalf("%s: DE54 %v, want the fund figures of %v", what, got, want)
		}
	}
	check("0110", bank.Send("0100", bank.Fields(map[int]string{2: pan, 3: "310000", 4: ""})))
	check("0130", bank.Send("0120", bank.Fields(map[int]string{2: pan, 3: "200000", 4: "000000000100"})))
	check("0230", bank.Send("0220", bank.Fields(map[int]string{2: pan, 3: "200000", 4: "000000000100"})))
	orig := bank.Fields(map[int]string{2: pan, 3: "200000", 4: "000000000100"})
	switchtest.WantCode(t, bank.Send("0200", orig), "00")
	check("0410", bank.Send("0400", orig))
	check("0430", bank.Send("0420", orig))
	reused := bank.Fields(map[int]string{2: pan, 3: "200000", 4: "000000000100"})
	switchtest.WantCode(t, bank.Send("0200", reused), "00")
	reused[4] = "000000000200"
	r = bank.Send("0200", reused)
	switchtest.WantCode(t, r, "94")
	check("0210 (94)", r)
}
