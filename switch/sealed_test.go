package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/goldcard/goldcard/ledger/ledgertest"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// TestNothingInTheClear runs a bank's day (purchases, a repeat, an
// authorisation and its completion, a reversal, a redemption from the
// fund, an unknown card, a balance inquiry, a reversal of an original
// never seen) and a bank with a MAC key, then looks for the PANs and the
// MAC key everywhere the switch keeps anything: every text, JSON and bytea
// column of the database, a pg_dump of it, the etcd keyspace and the
// switch's log. None is there; the repeat got the same bytes, and the
// completion and the reversal found their originals.
func TestNothingInTheClear(t *testing.T) {
	t.Parallel()
	d := switchtest.Start(t)
	const (
		macKey  = "00112233445566778899aabbccddeeff0123456789abcdef"
		cash    = "6228480000007001"
		fundPAN = "6228480000007002"
		unknown = "6228480000007999"
	)
	d.AddCard(cash, 100000, 0)
	d.AddCard(fundPAN, 1000, 500000)
	if out, err := switchtest.CLI(t, `{"listen": "`+switchtest.FreeAddr(t)+`", "dialect": "iso87-ascii", "acquirers": ["5555"], "mac": {"algorithm": "hmac-sha256", "key": "`+macKey+`"}}`,
		"config", "put", "banks/signing", "-", "--etcd", d.Etcd); err != nil {
		t.Fatalf("config put: %v\n%s", err, out)
	}
	bank := switchtest.ConnectBank(t, d.Bank)
	raw := switchtest.DialRaw(t, d.Bank)

	// A purchase and its repeat: the same bytes back.
	m, err := client.NewMessage(bank.Dialect, "0200", bank.Fields(map[int]string{2: cash, 3: "000000", 4: "000000001000"}))
	if err != nil {
		t.Fatal(err)
	}
	body, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	first := raw.RoundTrip(t, body)
	if again := raw.RoundTrip(t, body); !bytes.Equal(first, again) {
		t.Fatalf("the repeat's response differs:\n%q\n%q", first, again)
	}
	if !bytes.Contains(first, []byte(cash)) {
		t.Fatalf("the response does not echo DE2: %q", first)
	}
	// An authorisation and its completion.
	auth := bank.Fields(map[int]string{2: cash, 3: "000000", 4: "000000002000"})
	switchtest.WantCode(t, bank.Send("0100", auth), "00")
	completion := map[int]string{}
	for k, v := range auth {
		completion[k] = v
	}
	completion[11] = bank.Fields(nil)[11]
	switchtest.WantCode(t, bank.Send("0220", completion), "00")
	// A purchase and its reversal.
	p := bank.Fields(map[int]string{2: cash, 3: "000000", 4: "000000000500"})
	switchtest.WantCode(t, bank.Send("0200", p), "00")
	switchtest.WantCode(t, bank.Send("0400", p), "00")
	// A shortfall covered from the fund, an unknown card, a balance
	// inquiry, a reversal whose original never came.
	switchtest.WantCode(t, bank.Send("0200", bank.Fields(map[int]string{2: fundPAN, 3: "000000", 4: "000000050000"})), "00")
	switchtest.WantCode(t, bank.Send("0200", bank.Fields(map[int]string{2: unknown, 3: "000000", 4: "000000000100"})), "14")
	switchtest.WantCode(t, bank.Send("0200", bank.Fields(map[int]string{2: fundPAN, 3: "310000", 4: "000000000000"})), "00")
	switchtest.WantCode(t, bank.Send("0420", bank.Fields(map[int]string{2: cash, 3: "000000", 4: "000000000700"})), "00")
	// What stands: 1000 + 2000 posted, the 500 reversed; the fund paid
	// the shortfall of 49000.
	c := d.Card(cash)
	if c.Balance != 100000-3000 {
		t.Fatalf("balance %d, want %d: the completion or the reversal missed its original", c.Balance, 100000-3000)
	}
	if f := d.Card(fundPAN); f.Balance != 0 || f.FundBalance != 500000-49000 {
		t.Fatalf("fund card %+v", f)
	}

	var needles [][]byte
	for _, p := range []string{cash, fundPAN, unknown} {
		needles = append(needles, []byte(p), []byte(p[6:]), []byte(hex.EncodeToString([]byte(p))))
	}
	key, _ := hex.DecodeString(macKey)
	needles = append(needles, []byte(macKey), key, []byte(strings.ToUpper(macKey)))

	pool, err := pgxpool.New(context.Background(), d.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if found := ledgertest.Reveals(t, pool, needles...); len(found) > 0 {
		t.Errorf("in the clear in the database: %v", found)
	}
	// The scan sees what is there: the masked PAN is.
	if found := ledgertest.Reveals(t, pool, []byte("622848******7001")); len(found) != 1 || !strings.HasPrefix(found[0], "cards.pan_masked") {
		t.Fatalf("the masked PAN found in %v, want cards.pan_masked", found)
	}
	dump, err := exec.Command("pg_dump", "--no-owner", d.DB).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	if len(dump) < 10000 || !bytes.Contains(dump, []byte("COPY public.requests")) {
		t.Fatalf("pg_dump wrote %d bytes", len(dump))
	}
	for _, n := range needles {
		if bytes.Contains(dump, n) {
			t.Errorf("in the clear in pg_dump: %q", n)
		}
	}
	etcd, err := clientv3.New(clientv3.Config{Endpoints: []string{d.Etcd}})
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Close()
	kvs, err := etcd.Get(context.Background(), "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs.Kvs) < 5 {
		t.Fatalf("%d keys in etcd", len(kvs.Kvs))
	}
	var signing bool
	for _, kv := range kvs.Kvs {
		signing = signing || strings.HasSuffix(string(kv.Key), "config/banks/signing")
		for _, n := range needles {
			if bytes.Contains(kv.Value, n) || bytes.Contains(kv.Key, n) {
				t.Errorf("in the clear in etcd under %s", kv.Key)
			}
		}
	}
	if !signing {
		t.Fatal("the MAC bank is not in etcd")
	}
	if out, err := switchtest.CLI(t, "", "config", "get", "banks/signing", "--etcd", d.Etcd); err != nil || !strings.Contains(out, "wrapped under KEK") || strings.Contains(out, macKey) {
		t.Errorf("config get: %v\n%s", err, out)
	}
	logs := d.Logs()
	for _, n := range needles {
		if strings.Contains(logs, string(n)) {
			t.Errorf("in the clear in the log: %q", n)
		}
	}
}
