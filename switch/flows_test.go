package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moov-io/iso8583"
	connection "github.com/moov-io/iso8583-connection"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/client"
)

// bankSim is a bank connected to a switch under test.
type bankSim struct {
	t    *testing.T
	d    *iso.Dialect
	conn *connection.Connection
	stan atomic.Int64
	rrn  atomic.Int64
}

// connectBank connects a bank to addr; opts are client.DialBank's, such as
// client.WithTLS.
func connectBank(t *testing.T, addr string, opts ...connection.Option) *bankSim {
	t.Helper()
	d, err := iso.Builtin(iso.DefaultDialect)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := iso.HeaderByName(iso.HeaderBinary2)
	c, err := client.DialBank(context.Background(), addr, d, h, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	b := &bankSim{t: t, d: d, conn: c}
	b.stan.Store(time.Now().UnixNano() % 500000)
	return b
}

// fields of a request: the transaction's identifying fields are filled in
// with fresh values unless given.
func (b *bankSim) fields(f map[int]string) map[int]string {
	out := map[int]string{
		7:  time.Now().UTC().Format("0102150405"),
		11: fmt.Sprintf("%06d", b.stan.Add(1)%1000000),
		12: "101010", 13: "1125",
		32: "1234",
		37: fmt.Sprintf("%012d", b.rrn.Add(1)+time.Now().Unix()%1000000*1000),
		41: "ATM00001", 42: "MERCHANT0000001",
		49: "156",
	}
	for k, v := range f {
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// send sends a request and returns the response's fields.
func (b *bankSim) send(mti string, f map[int]string) map[int]string {
	b.t.Helper()
	m, err := client.NewMessage(b.d, mti, f)
	if err != nil {
		b.t.Fatal(err)
	}
	resp, err := b.conn.Send(m)
	if err != nil {
		b.t.Fatalf("%s: %v", mti, err)
	}
	return fieldsOf(b.t, resp)
}

func fieldsOf(t *testing.T, m *iso8583.Message) map[int]string {
	t.Helper()
	out := map[int]string{}
	for id := range m.GetFields() {
		if id == 1 {
			continue
		}
		s, err := m.GetString(id)
		if err != nil {
			t.Fatal(err)
		}
		out[id] = s
	}
	return out
}

// de54 returns DE54's amounts keyed "10/01", "10/02", "91/01", "91/02".
func de54(t *testing.T, resp map[int]string) map[string]int64 {
	t.Helper()
	bs, err := iso.ParseBalances(resp[54])
	if err != nil {
		t.Fatalf("DE54 %q: %v", resp[54], err)
	}
	out := map[string]int64{}
	for _, b := range bs {
		out[b.AccountType+"/"+b.AmountType] = b.Amount
	}
	return out
}

func wantCode(t *testing.T, resp map[int]string, code string) {
	t.Helper()
	if resp[39] != code {
		t.Fatalf("DE39 = %q, want %q (response %v)", resp[39], code, resp)
	}
}

// wantCard checks the admin API and the last DE54 agree with the figures.
func wantCard(t *testing.T, d *instance, pan string, resp map[int]string, balance, available, fund int64) {
	t.Helper()
	c := d.card(pan)
	if c.Balance != balance || c.Available != available || c.FundBalance != fund {
		t.Fatalf("admin API: balance %d available %d fund %d; want %d %d %d", c.Balance, c.Available, c.FundBalance, balance, available, fund)
	}
	if resp == nil {
		return
	}
	b := de54(t, resp)
	if b["10/01"] != balance || b["10/02"] != available || b["91/01"] != fund {
		t.Fatalf("DE54 %v; want balance %d available %d fund %d", b, balance, available, fund)
	}
}

// TestFlows drives every issuer flow over TCP against the real daemon.
func TestFlows(t *testing.T) {
	t.Parallel()
	d := startDaemon(t)
	bank := connectBank(t, d.bank)
	const (
		pan     = "6228480000000001"
		poor    = "6228480000000002"
		blocked = "6228480000000003"
		unknown = "6228480000000099"
	)
	d.addCard(pan, 100000, 500000)
	d.addCard(poor, 1000, 0)
	d.addCard(blocked, 1000, 0)
	if st := d.api("PUT", "/v1/cards/"+d.cardID(blocked)+"/status", map[string]string{"status": "blocked"}, nil); st != 200 {
		t.Fatalf("blocking: HTTP %d", st)
	}
	card := func(proc, amount string, extra map[int]string) map[int]string {
		f := map[int]string{2: pan, 3: proc, 4: amount}
		for k, v := range extra {
			f[k] = v
		}
		return bank.fields(f)
	}

	t.Run("network management", func(t *testing.T) {
		for _, code := range []string{"001", "301", "002"} {
			r := bank.send("0800", bank.fields(map[int]string{70: code, 2: "", 32: "", 37: "", 41: "", 42: "", 49: ""}))
			wantCode(t, r, "00")
			if r[0] != "0810" || r[70] != code {
				t.Fatalf("response %v", r)
			}
		}
	})

	t.Run("authorisation places a hold", func(t *testing.T) {
		r := bank.send("0100", card("000000", "000000012345", nil))
		wantCode(t, r, "00")
		if r[0] != "0110" || len(r[38]) != 6 || r[2] != pan || r[4] != "000000012345" {
			t.Fatalf("response %v", r)
		}
		wantCard(t, d, pan, r, 100000, 100000-12345, 500000)
	})

	t.Run("cash authorisation, repeat and reuse", func(t *testing.T) {
		f := card("010000", "000000010000", map[int]string{41: "ATM00002"})
		m1, _ := client.NewMessage(bank.d, "0100", f)
		r1, err := bank.conn.Send(m1)
		if err != nil {
			t.Fatal(err)
		}
		wantCode(t, fieldsOf(t, r1), "00")
		// The repeat gets the stored response, byte for byte.
		m2, _ := client.NewMessage(bank.d, "0101", f)
		r2, err := bank.conn.Send(m2)
		if err != nil {
			t.Fatal(err)
		}
		p1, _ := r1.Pack()
		p2, _ := r2.Pack()
		if !bytes.Equal(p1, p2) {
			t.Fatalf("repeat answered differently:\n%s\n%s", p1, p2)
		}
		wantCard(t, d, pan, fieldsOf(t, r2), 100000, 100000-12345-10000, 500000)
		// The same key asking for another amount is a duplicate.
		f[4] = "000000020000"
		wantCode(t, bank.send("0101", f), "94")
		wantCard(t, d, pan, nil, 100000, 100000-12345-10000, 500000)
	})

	t.Run("balance inquiry", func(t *testing.T) {
		r := bank.send("0100", card("310000", "", map[int]string{4: ""}))
		wantCode(t, r, "00")
		wantCard(t, d, pan, r, 100000, 77655, 500000)
		if de54(t, r)["91/02"] != 500000 {
			t.Fatalf("redeemable now: %v", de54(t, r))
		}
	})

	t.Run("completion captures the hold", func(t *testing.T) {
		auth := card("000000", "000000005000", map[int]string{41: "POS00009"})
		wantCode(t, bank.send("0100", auth), "00")
		wantCard(t, d, pan, nil, 100000, 72655, 500000)
		// Completed for less than was held, by DE90.
		de90 := "0100" + auth[11] + auth[7] + fmt.Sprintf("%011s", auth[32]) + "00000000000"
		r := bank.send("0220", card("000000", "000000004000", map[int]string{41: "POS00009", 37: auth[37], 90: de90}))
		wantCode(t, r, "00")
		wantCard(t, d, pan, r, 96000, 73655, 500000)
	})

	t.Run("financial postings", func(t *testing.T) {
		r := bank.send("0200", card("000000", "000000001000", nil))
		wantCode(t, r, "00")
		wantCard(t, d, pan, r, 95000, 72655, 500000)
		r = bank.send("0200", card("010000", "000000002000", nil))
		wantCode(t, r, "00")
		wantCard(t, d, pan, r, 93000, 70655, 500000)
		r = bank.send("0200", card("200000", "000000000500", nil))
		wantCode(t, r, "00")
		wantCard(t, d, pan, r, 93500, 71155, 500000)
		r = bank.send("0200", card("210000", "000000000500", nil))
		wantCode(t, r, "00")
		wantCard(t, d, pan, r, 94000, 71655, 500000)
		r = bank.send("0200", card("310000", "", map[int]string{4: ""}))
		wantCode(t, r, "00")
		wantCard(t, d, pan, r, 94000, 71655, 500000)
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
				r := bank.send(tc.mti, bank.fields(tc.f))
				wantCode(t, r, tc.code)
				if _, ok := r[38]; ok {
					t.Fatalf("declined response carries an approval code: %v", r)
				}
			})
		}
		wantCard(t, d, poor, nil, 1000, 1000, 0)
	})

	t.Run("reversal of a purchase, twice", func(t *testing.T) {
		before := d.card(pan)
		orig := card("000000", "000000003000", map[int]string{41: "POS00010"})
		wantCode(t, bank.send("0200", orig), "00")
		de90 := "0200" + orig[11] + orig[7] + fmt.Sprintf("%011s", orig[32]) + "00000000000"
		rev := card("000000", "000000003000", map[int]string{41: "POS00010", 90: de90})
		r := bank.send("0400", rev)
		wantCode(t, r, "00")
		if r[0] != "0410" || r[90] != de90 {
			t.Fatalf("response %v", r)
		}
		wantCard(t, d, pan, r, before.Balance, before.Available, 500000)
		wantCode(t, bank.send("0401", rev), "00")
		// Another reversal of the same original changes nothing.
		wantCode(t, bank.send("0420", card("000000", "000000003000", map[int]string{41: "POS00010", 90: de90})), "00")
		wantCard(t, d, pan, nil, before.Balance, before.Available, 500000)
	})

	de90Of := func(mti string, f map[int]string) string {
		return mti + f[11] + f[7] + fmt.Sprintf("%011s", f[32]) + "00000000000"
	}

	t.Run("a reversal is never reversed", func(t *testing.T) {
		before := d.card(pan)
		orig := card("000000", "000000003000", map[int]string{41: "POS00020"})
		wantCode(t, bank.send("0200", orig), "00")
		rev := card("000000", "000000003000", map[int]string{41: "POS00020", 90: de90Of("0200", orig)})
		wantCode(t, bank.send("0400", rev), "00")
		again := card("000000", "000000003000", map[int]string{41: "POS00020", 90: de90Of("0400", rev)})
		wantCode(t, bank.send("0400", again), "30")
		wantCard(t, d, pan, nil, before.Balance, before.Available, 500000)
	})

	t.Run("reversing a completed authorisation moves nothing", func(t *testing.T) {
		before := d.card(pan)
		auth := card("000000", "000000010000", map[int]string{41: "POS00021"})
		wantCode(t, bank.send("0100", auth), "00")
		comp := card("000000", "000000006000", map[int]string{41: "POS00021", 90: de90Of("0100", auth)})
		wantCode(t, bank.send("0220", comp), "00")
		wantCard(t, d, pan, nil, before.Balance-6000, before.Available-6000, 500000)
		wantCode(t, bank.send("0420", card("000000", "000000010000", map[int]string{41: "POS00021", 90: de90Of("0100", auth)})), "00")
		wantCard(t, d, pan, nil, before.Balance-6000, before.Available-6000, 500000)
		// Reversing the completion gives its amount back.
		wantCode(t, bank.send("0420", card("000000", "000000006000", map[int]string{41: "POS00021", 90: de90Of("0220", comp)})), "00")
		wantCard(t, d, pan, nil, before.Balance, before.Available, 500000)
	})

	t.Run("reversal before its completion", func(t *testing.T) {
		before := d.card(pan)
		comp := card("000000", "000000002500", map[int]string{41: "POS00022"})
		wantCode(t, bank.send("0420", card("000000", "000000002500", map[int]string{41: "POS00022", 90: de90Of("0220", comp)})), "00")
		wantCode(t, bank.send("0221", comp), "00")
		wantCard(t, d, pan, nil, before.Balance, before.Available, 500000)
	})

	t.Run("partial reversal of an authorisation", func(t *testing.T) {
		before := d.card(pan)
		auth := card("000000", "000000006000", map[int]string{41: "POS00011"})
		wantCode(t, bank.send("0100", auth), "00")
		// Matched without DE90 by acquirer, RRN, terminal and STAN;
		// DE95 keeps 2,500 of 6,000.
		rev := card("000000", "000000006000", map[int]string{41: "POS00011", 11: auth[11], 37: auth[37],
			95: "000000002500000000002500C00000000C00000000"})
		wantCode(t, bank.send("0420", rev), "00")
		wantCard(t, d, pan, nil, before.Balance, before.Available-2500, 500000)
	})

	t.Run("reversal before its original", func(t *testing.T) {
		before := d.card(pan)
		orig := card("000000", "000000000700", map[int]string{41: "POS00012"})
		de90 := "0200" + orig[11] + orig[7] + fmt.Sprintf("%011s", orig[32]) + "00000000000"
		wantCode(t, bank.send("0420", card("000000", "000000000700", map[int]string{41: "POS00012", 90: de90})), "00")
		r := bank.send("0200", orig)
		wantCode(t, r, "12")
		wantCard(t, d, pan, nil, before.Balance, before.Available, 500000)
		// Its repeat gets the same decline.
		wantCode(t, bank.send("0201", orig), "12")
	})

	t.Run("advice is never declined for funds", func(t *testing.T) {
		r := bank.send("0220", bank.fields(map[int]string{2: poor, 3: "000000", 4: "000000001500"}))
		wantCode(t, r, "00")
		wantCard(t, d, poor, r, -500, -500, 0)
		// A credit repays what the card owes first.
		r = bank.send("0200", bank.fields(map[int]string{2: poor, 3: "210000", 4: "000000000800"}))
		wantCode(t, r, "00")
		wantCard(t, d, poor, r, 300, 300, 0)
	})

	t.Run("unreadable frames", func(t *testing.T) {
		raw := dialRaw(t, d.bank)
		// A readable MTI with a broken body gets a 30 response.
		body := []byte("0200" + "7000000000000000" + "16622848000000000" + "1")
		r := raw.roundTrip(t, body)
		m, err := bank.d.Unpack(r)
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
		raw.write(t, []byte("\xff\xfe"))
		echo, _ := client.NewMessage(bank.d, "0800", bank.fields(map[int]string{70: "301", 2: "", 32: "", 37: "", 41: "", 42: "", 49: ""}))
		packed, _ := echo.Pack()
		r = raw.roundTrip(t, packed)
		if !bytes.HasPrefix(r, []byte("0810")) {
			t.Fatalf("echo after garbage: %q", r)
		}
		// A frame over the maximum length closes that link only.
		raw.writeHeader(t, 60000)
		raw.expectClosed(t)
		wantCode(t, bank.send("0800", bank.fields(map[int]string{70: "301", 2: "", 32: "", 37: "", 41: "", 42: "", 49: ""})), "00")
	})

	t.Run("responses from the bank do not jam the link", func(t *testing.T) {
		raw := dialRaw(t, d.bank)
		stray, _ := client.NewMessage(bank.d, "0110", map[int]string{39: "00"})
		packed, _ := stray.Pack()
		for range 300 {
			raw.write(t, packed)
		}
		echo, _ := client.NewMessage(bank.d, "0800", bank.fields(map[int]string{70: "301", 2: "", 32: "", 37: "", 41: "", 42: "", 49: ""}))
		packed, _ = echo.Pack()
		if r := raw.roundTrip(t, packed); !bytes.HasPrefix(r, []byte("0810")) {
			t.Fatalf("echo after 300 stray responses: %q", r)
		}
	})

	t.Run("third-party captures", func(t *testing.T) {
		raw := dialRaw(t, d.bank)
		for _, fx := range thirdPartyFixtures(t) {
			mti := string(fx[:4])
			want, isRequest := iso.ResponseMTI(mti)
			if !isRequest {
				raw.write(t, fx) // a response from a bank: not answered
				continue
			}
			r := raw.roundTrip(t, fx)
			if !bytes.HasPrefix(r, []byte(want)) {
				t.Fatalf("%s answered with %q", mti, r)
			}
		}
		// The link is still in step after the unanswered ones.
		echo, _ := client.NewMessage(bank.d, "0800", bank.fields(map[int]string{70: "301", 2: "", 32: "", 37: "", 41: "", 42: "", 49: ""}))
		packed, _ := echo.Pack()
		if r := raw.roundTrip(t, packed); !bytes.HasPrefix(r, []byte("0810")) {
			t.Fatalf("echo after the captures: %q", r)
		}
	})

	if m := d.metrics(); !bytes.Contains([]byte(m), []byte(`goldcard_requests_total{bank="default",mti="0200",processing_code="00",response_code="00"}`)) {
		t.Errorf("metrics lack request counts:\n%s", m)
	}
	d.assertNoSecrets(pan, poor, blocked, unknown)
}

// rawLink is a bank connection without the ISO library, for malformed input.
type rawLink struct{ c net.Conn }

func dialRaw(t *testing.T, addr string) *rawLink {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawLink{c}
}

func (r *rawLink) writeHeader(t *testing.T, n int) {
	t.Helper()
	if _, err := r.c.Write(binary.BigEndian.AppendUint16(nil, uint16(n))); err != nil {
		t.Fatal(err)
	}
}

func (r *rawLink) write(t *testing.T, body []byte) {
	t.Helper()
	r.writeHeader(t, len(body))
	if _, err := r.c.Write(body); err != nil {
		t.Fatal(err)
	}
}

func (r *rawLink) roundTrip(t *testing.T, body []byte) []byte {
	t.Helper()
	resp, err := r.exchange(body)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	return resp
}

// exchange sends one framed body and reads one framed answer.
func (r *rawLink) exchange(body []byte) ([]byte, error) {
	frame := binary.BigEndian.AppendUint16(nil, uint16(len(body)))
	if _, err := r.c.Write(append(frame, body...)); err != nil {
		return nil, err
	}
	_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(r.c, h[:]); err != nil {
		return nil, err
	}
	resp := make([]byte, binary.BigEndian.Uint16(h[:]))
	if _, err := io.ReadFull(r.c, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// closedWithin reports whether the switch closes the link within d.
func (r *rawLink) closedWithin(d time.Duration) bool {
	_ = r.c.SetReadDeadline(time.Now().Add(d))
	_, err := r.c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func (r *rawLink) expectClosed(t *testing.T) {
	t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the link stayed open")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the link stayed open")
	}
}

// thirdPartyFixtures returns the hex-bitmap messages captured from other
// projects (testdata/fixtures/third-party), without length headers.
func thirdPartyFixtures(t *testing.T) [][]byte {
	t.Helper()
	out, err := fixture.ThirdParty("../testdata/fixtures/third-party")
	if err != nil {
		t.Fatal(err)
	}
	return out
}
