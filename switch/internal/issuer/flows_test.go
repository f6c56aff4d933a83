package issuer_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// TestFlows drives every issuer flow over TCP against the real daemon.
func TestFlows(t *testing.T) {
	t.Parallel()
	d := switchtest.Start(t)
	bank := switchtest.ConnectBank(t, d.Bank)
	const (
		pan     = "6228480000000001"
		poor    = "6228480000000002"
		blocked = "6228480000000003"
		unknown = "6228480000000099"
	)
	d.AddCard(pan, 100000, 500000)
	d.AddCard(poor, 1000, 0)
	d.AddCard(blocked, 1000, 0)
	if st := d.API("PUT", "/v1/cards/"+d.CardID(blocked)+"/status", map[string]string{"status": "blocked"}, nil); st != 200 {
		t.Fatalf("blocking: HTTP %d", st)
	}
	card := func(proc, amount string, extra map[int]string) map[int]string {
		f := map[int]string{2: pan, 3: proc, 4: amount}
		for k, v := range extra {
			f[k] = v
		}
		return bank.Fields(f)
	}

	t.Run("network management", func(t *testing.T) {
		for _, code := range []string{"001", "301", "002"} {
			r := bank.Send("0800", bank.Fields(map[int]string{70: code, 2: "", 32: "", 37: "", 41: "", 42: "", 49: ""}))
			switchtest.WantCode(t, r, "00")
			if r[0] != "0810" || r[70] != code {
				t.Fatalf("response %v", r)
			}
		}
	})

	t.Run("authorisation places a hold", func(t *testing.T) {
		r := bank.Send("0100", card("000000", "000000012345", nil))
		switchtest.WantCode(t, r, "00")
		if r[0] != "0110" || len(r[38]) != 6 || r[2] != pan || r[4] != "000000012345" {
			t.Fatalf("response %v", r)
		}
		switchtest.WantCard(t, d, pan, r, 100000, 100000-12345, 500000)
	})

	t.Run("cash authorisation, repeat and reuse", func(t *testing.T) {
		f := card("010000", "000000010000", map[int]string{41: "ATM00002"})
		m1, _ := client.NewMessage(bank.Dialect, "0100", f)
		r1, err := bank.Conn.Send(m1)
		if err != nil {
			t.Fatal(err)
		}
		switchtest.WantCode(t, switchtest.FieldsOf(t, r1), "00")
		// The repeat gets the stored response, byte for byte.
		m2, _ := client.NewMessage(bank.Dialect, "0101", f)
		r2, err := bank.Conn.Send(m2)
		if err != nil {
			t.Fatal(err)
		}
		p1, _ := r1.Pack()
		p2, _ := r2.Pack()
		if !bytes.Equal(p1, p2) {
			t.Fatalf("repeat answered differently:\n%s\n%s", p1, p2)
		}
		switchtest.WantCard(t, d, pan, switchtest.FieldsOf(t, r2), 100000, 100000-12345-10000, 500000)
		// The same key asking for another amount is a duplicate.
		f[4] = "000000020000"
		switchtest.WantCode(t, bank.Send("0101", f), "94")
		switchtest.WantCard(t, d, pan, nil, 100000, 100000-12345-10000, 500000)
	})

	t.Run("balance inquiry", func(t *testing.T) {
		r := bank.Send("0100", card("310000", "", map[int]string{4: ""}))
		switchtest.WantCode(t, r, "00")
		switchtest.WantCard(t, d, pan, r, 100000, 77655, 500000)
		if switchtest.DE54(t, r)["91/02"] != 500000 {
			t.Fatalf("redeemable now: %v", switchtest.DE54(t, r))
		}
	})

	t.Run("completion captures the hold", func(t *testing.T) {
		auth := card("000000", "000000005000", map[int]string{41: "POS00009"})
		switchtest.WantCode(t, bank.Send("0100", auth), "00")
		switchtest.WantCard(t, d, pan, nil, 100000, 72655, 500000)
		// Completed for less than was held, by DE90.
		de90 := "0100" + auth[11] + auth[7] + fmt.Sprintf("%011s", auth[32]) + "00000000000"
		r := bank.Send("0220", card("000000", "000000004000", map[int]string{41: "POS00009", 37: auth[37], 90: de90}))
		switchtest.WantCode(t, r, "00")
		switchtest.WantCard(t, d, pan, r, 96000, 73655, 500000)
	})

	t.Run("financial postings", func(t *testing.T) {
		r := bank.Send("0200", card("000000", "000000001000", nil))
		switchtest.WantCode(t, r, "00")
		switchtest.WantCard(t, d, pan, r, 95000, 72655, 500000)
		r = bank.Send("0200", card("010000", "000000002000", nil))
		switchtest.WantCode(t, r, "00")
		switchtest.WantCard(t, d, pan, r, 93000, 70655, 500000)
		r = bank.Send("0200", card("200000", "000000000500", nil))
		switchtest.WantCode(t, r, "00")
		switchtest.WantCard(t, d, pan, r, 93500, 71155, 500000)
		r = bank.Send("0200", card("210000", "000000000500", nil))
		switchtest.WantCode(t, r, "00")
		switchtest.WantCard(t, d, pan, r, 94000, 71655, 500000)
		r = bank.Send("0200", card("310000", "", map[int]string{4: ""}))
		switchtest.WantCode(t, r, "00")
		switchtest.WantCard(t, d, pan, r, 94000, 71655, 500000)
	})

	t.Run("declines", func(t *testing.T) {
		for _, tc := range []struct {
			name, mti string
			f         map[int]string
			code      string
		}{
			{"insufficient funds", "0200", map[int]string{2: poor, 3: "000000", 4: "000000001001"}, "51"},
			{"insufficient funds for a hold", "0100", map[int]string{2: poor, 3: "010000", 4: "000000001001"}, "51"},
			{"unknown card", "0200", map[int]string{2: unknown, 3: "000000", 4: "000000000100"}, "14"},
			{"blocked card", "0100", map[int]string{2: blocked, 3: "000000", 4: "000000000100"}, "57"},
			{"wrong currency", "0200", map[int]string{2: poor, 3: "000000", 4: "000000000100", 49: "840"}, "13"},
			{"expired", "0200", map[int]string{2: poor, 3: "000000", 4: "000000000100", 14: "2001"}, "54"},
			{"zero amount", "0200", map[int]string{2: poor, 3: "000000", 4: "000000000000"}, "13"},
			{"refund by authorisation", "0100", map[int]string{2: poor, 3: "200000", 4: "000000000100"}, "12"},
			{"unknown processing code", "0200", map[int]string{2: poor, 3: "400000", 4: "000000000100"}, "12"},
			{"missing amount", "0200", map[int]string{2: poor, 3: "000000", 4: ""}, "30"},
			{"impossible date", "0200", map[int]string{2: poor, 3: "000000", 4: "000000000100", 13: "9099"}, "30"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := bank.Send(tc.mti, bank.Fields(tc.f))
				switchtest.WantCode(t, r, tc.code)
				if _, ok := r[38]; ok {
					t.Fatalf("declined response carries an approval code: %v", r)
				}
			})
		}
		switchtest.WantCard(t, d, poor, nil, 1000, 1000, 0)
	})

	t.Run("reversal of a purchase, twice", func(t *testing.T) {
		before := d.Card(pan)
		orig := card("000000", "000000003000", map[int]string{41: "POS00010"})
		switchtest.WantCode(t, bank.Send("0200", orig), "00")
		de90 := "0200" + orig[11] + orig[7] + fmt.Sprintf("%011s", orig[32]) + "00000000000"
		rev := card("000000", "000000003000", map[int]string{41: "POS00010", 90: de90})
		r := bank.Send("0400", rev)
		switchtest.WantCode(t, r, "00")
		if r[0] != "0410" || r[90] != de90 {
			t.Fatalf("response %v", r)
		}
		switchtest.WantCard(t, d, pan, r, before.Balance, before.Available, 500000)
		switchtest.WantCode(t, bank.Send("0401", rev), "00")
		// Another reversal of the same original changes nothing.
		switchtest.WantCode(t, bank.Send("0420", card("000000", "000000003000", map[int]string{41: "POS00010", 90: de90})), "00")
		switchtest.WantCard(t, d, pan, nil, before.Balance, before.Available, 500000)
	})

	de90Of := func(mti string, f map[int]string) string {
		return mti + f[11] + f[7] + fmt.Sprintf("%011s", f[32]) + "00000000000"
	}

	t.Run("a reversal is never reversed", func(t *testing.T) {
		before := d.Card(pan)
		orig := card("000000", "000000003000", map[int]string{41: "POS00020"})
		switchtest.WantCode(t, bank.Send("0200", orig), "00")
		rev := card("000000", "000000003000", map[int]string{41: "POS00020", 90: de90Of("0200", orig)})
		switchtest.WantCode(t, bank.Send("0400", rev), "00")
		again := card("000000", "000000003000", map[int]string{41: "POS00020", 90: de90Of("0400", rev)})
		switchtest.WantCode(t, bank.Send("0400", again), "30")
		switchtest.WantCard(t, d, pan, nil, before.Balance, before.Available, 500000)
	})

	t.Run("reversing a completed authorisation moves nothing", func(t *testing.T) {
		before := d.Card(pan)
		auth := card("000000", "000000010000", map[int]string{41: "POS00021"})
		switchtest.WantCode(t, bank.Send("0100", auth), "00")
		comp := card("000000", "000000006000", map[int]string{41: "POS00021", 90: de90Of("0100", auth)})
		switchtest.WantCode(t, bank.Send("0220", comp), "00")
		switchtest.WantCard(t, d, pan, nil, before.Balance-6000, before.Available-6000, 500000)
		switchtest.WantCode(t, bank.Send("0420", card("000000", "000000010000", map[int]string{41: "POS00021", 90: de90Of("0100", auth)})), "00")
		switchtest.WantCard(t, d, pan, nil, before.Balance-6000, before.Available-6000, 500000)
		// Reversing the completion gives its amount back.
		switchtest.WantCode(t, bank.Send("0420", card("000000", "000000006000", map[int]string{41: "POS00021", 90: de90Of("0220", comp)})), "00")
		switchtest.WantCard(t, d, pan, nil, before.Balance, before.Available, 500000)
	})

	t.Run("reversal before its completion", func(t *testing.T) {
		before := d.Card(pan)
		comp := card("000000", "000000002500", map[int]string{41: "POS00022"})
		switchtest.WantCode(t, bank.Send("0420", card("000000", "000000002500", map[int]string{41: "POS00022", 90: de90Of("0220", comp)})), "00")
		switchtest.WantCode(t, bank.Send("0221", comp), "00")
		switchtest.WantCard(t, d, pan, nil, before.Balance, before.Available, 500000)
	})

	t.Run("partial reversal of an authorisation", func(t *testing.T) {
		before := d.Card(pan)
		auth := card("000000", "000000006000", map[int]string{41: "POS00011"})
		switchtest.WantCode(t, bank.Send("0100", auth), "00")
		// Matched without DE90 by acquirer, RRN, terminal and STAN;
		// DE95 keeps 2,500 of 6,000.
		rev := card("000000", "000000006000", map[int]string{41: "POS00011", 11: auth[11], 37: auth[37],
			95: "000000002500000000002500C00000000C00000000"})
		switchtest.WantCode(t, bank.Send("0420", rev), "00")
		switchtest.WantCard(t, d, pan, nil, before.Balance, before.Available-2500, 500000)
	})

	t.Run("reversal before its original", func(t *testing.T) {
		before := d.Card(pan)
		orig := card("000000", "000000000700", map[int]string{41: "POS00012"})
		de90 := "0200" + orig[11] + orig[7] + fmt.Sprintf("%011s", orig[32]) + "00000000000"
		switchtest.WantCode(t, bank.Send("0420", card("000000", "000000000700", map[int]string{41: "POS00012", 90: de90})), "00")
		r := bank.Send("0200", orig)
		switchtest.WantCode(t, r, "12")
		switchtest.WantCard(t, d, pan, nil, before.Balance, before.Available, 500000)
		// Its repeat gets the same decline.
		switchtest.WantCode(t, bank.Send("0201", orig), "12")
	})

	t.Run("advice is never declined for funds", func(t *testing.T) {
		r := bank.Send("0220", bank.Fields(map[int]string{2: poor, 3: "000000", 4: "000000001500"}))
		switchtest.WantCode(t, r, "00")
		switchtest.WantCard(t, d, poor, r, -500, -500, 0)
		// A credit repays what the card owes first.
		r = bank.Send("0200", bank.Fields(map[int]string{2: poor, 3: "210000", 4: "000000000800"}))
		switchtest.WantCode(t, r, "00")
		switchtest.WantCard(t, d, poor, r, 300, 300, 0)
	})

	t.Run("unreadable frames", func(t *testing.T) {
		raw := switchtest.DialRaw(t, d.Bank)
		// A readable MTI with a broken body gets a 30 response.
		body := []byte("0200" + "7000000000000000" + "16622848000000000" + "1")
		r := raw.RoundTrip(t, body)
		m, err := bank.Dialect.Unpack(r)
		if err != nil {
			t.Fatalf("unpacking the 30 response: %v", err)
		}
		if mti, _ := m.GetMTI(); mti != "0210" {
			t.Fatalf("MTI %s", mti)
		}
		if rc, _ := m.GetString(39); rc != "30" {
			t.Fatalf("DE39 %s", rc)
		}
		// No MTI: nothing to answer, and the link carries on.
		raw.Write(t, []byte("\xff\xfe"))
		echo, _ := client.NewMessage(bank.Dialect, "0800", bank.Fields(map[int]string{70: "301", 2: "", 32: "", 37: "", 41: "", 42: "", 49: ""}))
		packed, _ := echo.Pack()
		r = raw.RoundTrip(t, packed)
		if !bytes.HasPrefix(r, []byte("0810")) {
			t.Fatalf("echo after garbage: %q", r)
		}
		// A frame over the maximum length closes that link only.
		raw.WriteHeader(t, 60000)
		raw.ExpectClosed(t)
		switchtest.WantCode(t, bank.Send("0800", bank.Fields(map[int]string{70: "301", 2: "", 32: "", 37: "", 41: "", 42: "", 49: ""})), "00")
	})

	t.Run("responses from the bank do not jam the link", func(t *testing.T) {
		raw := switchtest.DialRaw(t, d.Bank)
		stray, _ := client.NewMessage(bank.Dialect, "0110", map[int]string{39: "00"})
		packed, _ := stray.Pack()
		for range 300 {
			raw.Write(t, packed)
		}
		echo, _ := client.NewMessage(bank.Dialect, "0800", bank.Fields(map[int]string{70: "301", 2: "", 32: "", 37: "", 41: "", 42: "", 49: ""}))
		packed, _ = echo.Pack()
		if r := raw.RoundTrip(t, packed); !bytes.HasPrefix(r, []byte("0810")) {
			t.Fatalf("echo after 300 stray responses: %q", r)
		}
	})

	t.Run("third-party captures", func(t *testing.T) {
		raw := switchtest.DialRaw(t, d.Bank)
		for _, fx := range switchtest.ThirdParty(t) {
			mti := string(fx[:4])
			want, isRequest := iso.ResponseMTI(mti)
			if !isRequest {
				raw.Write(t, fx) // a response from a bank: not answered
				continue
			}
			r := raw.RoundTrip(t, fx)
			if !bytes.HasPrefix(r, []byte(want)) {
				t.Fatalf("%s answered with %q", mti, r)
			}
		}
		// The link is still in step after the unanswered ones.
		echo, _ := client.NewMessage(bank.Dialect, "0800", bank.Fields(map[int]string{70: "301", 2: "", 32: "", 37: "", 41: "", 42: "", 49: ""}))
		packed, _ := echo.Pack()
		if r := raw.RoundTrip(t, packed); !bytes.HasPrefix(r, []byte("0810")) {
			t.Fatalf("echo after the captures: %q", r)
		}
	})

	if m := d.Metrics(); !bytes.Contains([]byte(m), []byte(`goldcard_requests_total{bank="default",mti="0200",processing_code="00",response_code="00"}`)) {
		t.Errorf("metrics lack request counts:\n%s", m)
	}
	d.AssertNoSecrets(pan, poor, blocked, unknown)
}
