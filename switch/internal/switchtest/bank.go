package switchtest

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moov-io/iso8583"
	connection "github.com/moov-io/iso8583-connection"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/fixture"
)

// Bank is a bank connected to a switch under test.
type Bank struct {
	t       *testing.T
	Dialect *iso.Dialect
	Conn    *connection.Connection
	stan    atomic.Int64
	rrn     atomic.Int64
}

// ConnectBank connects a bank to addr; opts are client.DialBank's, such as
// client.WithTLS.
func ConnectBank(t *testing.T, addr string, opts ...connection.Option) *Bank {
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
	return NewBank(t, d, c, time.Now().UnixNano()%500000)
}

// NewBank is a bank speaking dialect d on c (nil: it only builds
// messages), numbering its requests' STANs from after stan.
func NewBank(t *testing.T, d *iso.Dialect, c *connection.Connection, stan int64) *Bank {
	b := &Bank{t: t, Dialect: d, Conn: c}
	b.stan.Store(stan)
	return b
}

// Fields are a request's fields: the transaction's identifying fields are filled in
// with fresh values unless given.
func (b *Bank) Fields(f map[int]string) map[int]string {
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

// Send sends a request and returns the response's fields.
func (b *Bank) Send(mti string, f map[int]string) map[int]string {
	b.t.Helper()
	m, err := client.NewMessage(b.Dialect, mti, f)
	if err != nil {
		b.t.Fatal(err)
	}
	resp, err := b.Conn.Send(m)
	if err != nil {
		b.t.Fatalf("%s: %v", mti, err)
	}
	return FieldsOf(b.t, resp)
}

// FieldsOf is a message's fields as strings, by number, without DE1.
func FieldsOf(t *testing.T, m *iso8583.Message) map[int]string {
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

// DE54 returns DE54's amounts keyed "10/01", "10/02", "91/01", "91/02".
func DE54(t *testing.T, resp map[int]string) map[string]int64 {
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

// WantCode fails unless the response's DE39 is code.
func WantCode(t *testing.T, resp map[int]string, code string) {
	t.Helper()
	if resp[39] != code {
		t.Fatalf("DE39 = %q, want %q (response %v)", resp[39], code, resp)
	}
}

// WantCard checks the admin API and the last DE54 agree with the figures.
func WantCard(t *testing.T, d *Switch, pan string, resp map[int]string, balance, available, fund int64) {
	t.Helper()
	c := d.Card(pan)
	if c.Balance != balance || c.Available != available || c.FundBalance != fund {
		t.Fatalf("admin API: balance %d available %d fund %d; want %d %d %d", c.Balance, c.Available, c.FundBalance, balance, available, fund)
	}
	if resp == nil {
		return
	}
	b := DE54(t, resp)
	if b["10/01"] != balance || b["10/02"] != available || b["91/01"] != fund {
		t.Fatalf("DE54 %v; want balance %d available %d fund %d", b, balance, available, fund)
	}
}

// Echo is a network management echo's fields.
func (b *Bank) Echo() map[int]string {
	return b.Fields(map[int]string{70: "301", 2: "", 32: "", 37: "", 41: "", 42: "", 49: ""})
}

// MustMessage is a 0200 purchase of amount (12 digits) on pan, with b's
// fresh identifying fields.
func MustMessage(t *testing.T, b *Bank, pan, amount string) *iso8583.Message {
	t.Helper()
	m, err := client.NewMessage(b.Dialect, "0200", b.Fields(map[int]string{2: pan, 3: "000000", 4: amount}))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// ThirdParty returns the hex-bitmap messages captured from other
// projects (testdata/fixtures/third-party), without length headers.
func ThirdParty(t *testing.T) [][]byte {
	t.Helper()
	out, err := fixture.ThirdParty(filepath.Join(Root(t), "testdata", "fixtures", "third-party"))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// EchoFrame is a packed 0800 echo test with the given STAN.
func EchoFrame(t *testing.T, stan int) []byte {
	t.Helper()
	d, err := iso.Builtin(iso.DefaultDialect)
	if err != nil {
		t.Fatal(err)
	}
	m, err := client.NewMessage(d, "0800", map[int]string{7: "1125101010", 11: fmt.Sprintf("%06d", stan), 70: "301"})
	if err != nil {
		t.Fatal(err)
	}
	packed, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return packed
}
