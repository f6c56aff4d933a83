package link_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/link"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
	"github.com/goldcard/goldcard/switch/internal/switchtest/pki"
	"github.com/goldcard/goldcard/switch/internal/tool/bench"
)

// tlsBankJSON is a bank on addr whose listener uses the server
// certificate srv and asks for client certificates issued by clientCA,
// bound to subjects and pins.
func tlsBankJSON(addr string, acquirers []string, srv pki.Cert, clientCA *pki.CA, subjects, pins []string) string {
	b := map[string]any{
		"listen": addr, "acquirers": acquirers,
		"tls": config.TLS{CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: clientCA.File, ClientSubjects: subjects, ClientSPKISHA256: pins},
	}
	out, _ := json.Marshal(b)
	return string(out)
}

// TestTLSBankListener: a bank on mutual TLS with its identity bound. Only
// a client with a certificate of the bank's CA that carries the bank's
// subject or key is let in; plain TCP is not. The switch's certificate is
// replaced on disk while a link is up: new connections see the new one,
// the link carries on, and a broken file keeps the old one.
func TestTLSBankListener(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serverCA := pki.NewCA(t, dir, "server")
	banksCA := pki.NewCA(t, dir, "banks")
	rogueCA := pki.NewCA(t, dir, "rogue")
	srv := serverCA.Issue("switch", "goldcard")
	acmeGW := banksCA.Issue("acme-gw", "acme-gw")
	acmeDR := banksCA.Issue("acme-dr", "acme-dr") // let in by its key pin
	beta := banksCA.Issue("beta-gw", "beta-gw")   // the right CA, another bank
	rogue := rogueCA.Issue("rogue", "acme-gw")    // the right name, another CA

	d := switchtest.Start(t, "--db-pool", "8")
	addr := switchtest.FreeAddr(t)
	out, err := switchtest.CLI(t, tlsBankJSON(addr, nil, srv, banksCA, []string{"acme-gw"}, []string{acmeDR.SPKI}),
		"config", "put", "banks/acme", "-", "--etcd", d.Etcd)
	if err != nil {
		t.Fatalf("config put banks/acme: %v\n%s", err, out)
	}
	switchtest.WaitFor(t, "acme's TLS listener", func() bool {
		refused, _ := pki.Refused(t, addr, pki.ClientConfig(t, serverCA, &acmeGW))
		return !refused
	})

	for _, tc := range []struct {
		name string
		cert *pki.Cert
	}{
		{"no client certificate", nil},
		{"a certificate of another CA", &rogue},
		{"a certificate bound to another bank", &beta},
	} {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			if refused, err := pki.Refused(t, addr, pki.ClientConfig(t, serverCA, tc.cert)); !refused {
				t.Fatal("the handshake was accepted")
			} else {
				t.Logf("refused: %v", err)
			}
		})
	}
	t.Run("refused/plain TCP", func(t *testing.T) {
		b := switchtest.NewBank(t, mustDialect(t), nil, 0)
		m, _ := client.NewMessage(b.Dialect, "0800", b.Echo())
		packed, _ := m.Pack()
		resp, err := switchtest.DialRaw(t, addr).Exchange(packed)
		if err == nil && bytes.HasPrefix(resp, []byte("0810")) {
			t.Fatal("a plain TCP client was answered")
		}
	})

	const pan = "6228480000000951"
	d.AddCard(pan, 100000, 0)
	bank := switchtest.ConnectBank(t, addr, client.WithTLS(pki.ClientConfig(t, serverCA, &acmeGW)))
	switchtest.WantCode(t, bank.Send("0800", bank.Echo()), "00")
	r := bank.Send("0200", bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000001000"}))
	switchtest.WantCode(t, r, "00")
	switchtest.WantCard(t, d, pan, r, 99000, 99000, 0)
	dr := switchtest.ConnectBank(t, addr, client.WithTLS(pki.ClientConfig(t, serverCA, &acmeDR)))
	switchtest.WantCode(t, dr.Send("0800", dr.Echo()), "00")

	refusedTLS := regexp.MustCompile(`goldcard_connection_events_total\{bank="acme",event="refused_tls"\} (\d+)`)
	if m := refusedTLS.FindStringSubmatch(d.Metrics()); m == nil {
		t.Error("refused handshakes not counted")
	} else if n, _ := strconv.Atoi(m[1]); n < 4 {
		t.Errorf("%d refused handshakes counted, want at least 4", n)
	}
	if !strings.Contains(d.Logs(), "TLS handshake failed") {
		t.Error("refused handshakes were not logged")
	}

	// The switch's certificate and key are replaced by ones of a new CA.
	serverCA2 := pki.NewCA(t, dir, "server2")
	srv2 := serverCA2.Issue("switch2", "goldcard")
	pki.CopyFile(t, srv2.KeyFile, srv.KeyFile)
	pki.CopyFile(t, srv2.CertFile, srv.CertFile)
	switchtest.WaitFor(t, "the new certificate", func() bool {
		refused, _ := pki.Refused(t, addr, pki.ClientConfig(t, serverCA2, &acmeGW))
		return !refused
	})
	if refused, _ := pki.Refused(t, addr, pki.ClientConfig(t, serverCA, &acmeGW)); !refused {
		t.Error("a new connection was still shown the old certificate")
	}
	r = bank.Send("0200", bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000001000"}))
	switchtest.WantCode(t, r, "00")
	switchtest.WantCard(t, d, pan, r, 98000, 98000, 0)

	// A broken certificate file is reported once and not taken on.
	if err := os.WriteFile(srv.CertFile, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Each handshake a check period after the last reads the files again.
	for range 3 {
		time.Sleep(1100 * time.Millisecond)
		if refused, err := pki.Refused(t, addr, pki.ClientConfig(t, serverCA2, &acmeGW)); refused {
			t.Fatalf("a broken certificate file was taken on: %v", err)
		}
	}
	switchtest.WaitFor(t, "the broken file to be reported", func() bool { return strings.Contains(d.Logs(), "TLS files not reloaded") })
	if n := strings.Count(d.Logs(), "TLS files not reloaded"); n != 1 {
		t.Errorf("the broken file was reported %d times, want once", n)
	}
	pki.CopyFile(t, srv2.CertFile, srv.CertFile)

	// The tools reach the bank with their --tls-* flags.
	tlsFlags := []string{"--tls-ca", serverCA2.File, "--tls-cert", acmeGW.CertFile, "--tls-key", acmeGW.KeyFile, "--tls-server-name", "localhost"}
	out, err = switchtest.CLI(t, "", append([]string{"replay", "--addr", addr, "--admin", "http://" + d.Admin, filepath.Join(switchtest.Root(t), "testdata", "replay", "core", "network.yaml")}, tlsFlags...)...)
	if err != nil || !strings.Contains(out, " 0 failed") {
		t.Errorf("replay over TLS: %v\n%s", err, out)
	}
	out, err = switchtest.CLI(t, "", append([]string{"bench", "auth", "--addr", addr, "--admin", "http://" + d.Admin,
		"--cards", "4", "--conns", "1", "--concurrency", "2", "--duration", "300ms", "--json"}, tlsFlags...)...)
	var results []bench.Result
	if err == nil {
		err = json.Unmarshal([]byte(out[strings.Index(out, "["):]), &results)
	}
	if err != nil || len(results) != 1 || results[0].Requests == 0 || results[0].Errors != 0 {
		t.Errorf("bench auth over TLS: %v\n%s", err, out)
	}

	// TLS turned off: the listener is replaced by a plain one.
	out, err = switchtest.CLI(t, `{"listen":"`+addr+`"}`, "config", "put", "banks/acme", "-", "--etcd", d.Etcd)
	if err != nil {
		t.Fatalf("config put banks/acme: %v\n%s", err, out)
	}
	switchtest.WaitFor(t, "acme's plain listener", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		b := switchtest.NewBank(t, mustDialect(t), nil, 0)
		m, _ := client.NewMessage(b.Dialect, "0800", b.Echo())
		packed, _ := m.Pack()
		resp, err := (&switchtest.Raw{Conn: c}).Exchange(packed)
		return err == nil && bytes.HasPrefix(resp, []byte("0810"))
	})

	d.AssertNoSecrets(pan)
	for _, f := range []string{srv.KeyFile, srv2.KeyFile} {
		key, _ := os.ReadFile(f)
		if lines := strings.Split(string(key), "\n"); len(lines) > 1 && strings.Contains(d.Logs(), lines[1]) {
			t.Errorf("the switch logged its key %s", filepath.Base(f))
		}
	}
}

func mustDialect(t *testing.T) *iso.Dialect {
	t.Helper()
	d, err := iso.Builtin(iso.DefaultDialect)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestTLSSharedListener: two banks on one TLS port, told apart by DE32,
// each bound to its own client identity. A client certificate of either
// is let in; a message it sends for the other bank is refused with 92
// and posts nothing.
func TestTLSSharedListener(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serverCA := pki.NewCA(t, dir, "server")
	banksCA := pki.NewCA(t, dir, "banks")
	srvCert := serverCA.Issue("switch", "goldcard")
	north := banksCA.Issue("north", "north-gw")
	south := banksCA.Issue("south", "south-gw")
	stranger := banksCA.Issue("stranger", "west-gw")
	addr := switchtest.FreeAddr(t)
	srv, l := switchtest.StartServer(t,
		"banks/north", tlsBankJSON(addr, []string{"111"}, srvCert, banksCA, nil, []string{north.SPKI}),
		"banks/south", tlsBankJSON(addr, []string{"222"}, srvCert, banksCA, []string{"south-gw"}, nil))
	if got := srv.BankAddr("north"); got == nil || got.String() != addr {
		t.Fatalf("north listens on %v, not %s", got, addr)
	}
	ctx := context.Background()
	const pan = "6228480000000961"
	if _, err := l.CreateCard(ctx, ledger.NewCard{PAN: pan, Currency: "156", Balance: 100000}); err != nil {
		t.Fatal(err)
	}
	if refused, _ := pki.Refused(t, addr, pki.ClientConfig(t, serverCA, &stranger)); !refused {
		t.Error("a certificate bound to neither bank was let in")
	}

	debit := func(b *switchtest.Bank, acquirer, code string) {
		t.Helper()
		switchtest.WantCode(t, b.Send("0200", b.Fields(map[int]string{2: pan, 3: "000000", 4: "000000000100", 32: acquirer})), code)
	}
	// A client that never starts its handshake holds up nobody (and does
	// not hold up shutdown either).
	idle := switchtest.DialRaw(t, addr)
	n := switchtest.ConnectBank(t, addr, client.WithTLS(pki.ClientConfig(t, serverCA, &north)))
	s := switchtest.ConnectBank(t, addr, client.WithTLS(pki.ClientConfig(t, serverCA, &south)))
	debit(n, "111", "00")
	debit(s, "222", "00")
	debit(n, "222", "92")
	debit(s, "111", "92")
	c, err := l.Card(ctx, pan, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Balance() != 99800 {
		t.Fatalf("balance %d, want 99800: a refused message was posted", c.Balance())
	}
	if idle.ClosedWithin(100 * time.Millisecond) {
		t.Error("a connection still in its handshake was closed early")
	}
	// One address may have only so many handshakes under way; the next
	// connections from it are refused at once, and the links up carry on.
	// The switch takes connections in the order they were made.
	refused := func() float64 {
		return switchtest.Total(switchtest.Scrape(t, srv.AdminAddr().String())["goldcard_connection_events_total"],
			map[string]string{"event": "refused_handshakes_per_address"})
	}
	stalled := []*switchtest.Raw{idle}
	for len(stalled) < link.MaxHandshakesPerAddr+2 {
		stalled = append(stalled, switchtest.DialRaw(t, addr))
	}
	switchtest.WaitFor(t, "two stalled handshakes over the limit to be refused", func() bool { return refused() == 2 })
	for i, raw := range stalled {
		if i < link.MaxHandshakesPerAddr {
			if raw.ClosedWithin(100 * time.Millisecond) {
				t.Errorf("stalled handshake %d of one address refused, within the limit of %d", i+1, link.MaxHandshakesPerAddr)
			}
			continue
		}
		raw.ExpectClosed(t)
	}
	debit(n, "111", "00")
}

// TestTLSNeverPlain: a bank whose config turns TLS on is not served on a
// plain link, even while its TLS listener cannot open (here, a key file
// that does not exist) and the plain one it replaces keeps accepting.
func TestTLSNeverPlain(t *testing.T) {
	d := switchtest.Start(t, "--db-pool", "8")
	addr := switchtest.FreeAddr(t)
	if out, err := switchtest.CLI(t, `{"listen":"`+addr+`"}`, "config", "put", "banks/acme", "-", "--etcd", d.Etcd); err != nil {
		t.Fatalf("config put banks/acme: %v\n%s", err, out)
	}
	const pan = "6228480000000961"
	d.AddCard(pan, 100000, 0)
	h, _ := iso.HeaderByName(iso.HeaderBinary2)
	switchtest.WaitFor(t, "acme's plain listener", func() bool {
		c, err := client.DialBank(context.Background(), addr, mustDialect(t), h)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	bank := switchtest.ConnectBank(t, addr)
	debit := map[int]string{2: pan, 3: "000000", 4: "000000001000"}
	switchtest.WantCode(t, bank.Send("0200", bank.Fields(debit)), "00")

	missing := filepath.Join(t.TempDir(), "missing.pem")
	cfg := fmt.Sprintf(`{"listen":%q,"tls":{"cert_file":%q,"key_file":%q}}`, addr, missing, missing)
	out, _ := switchtest.CLI(t, cfg, "config", "put", "banks/acme", "-", "--etcd", d.Etcd)
	t.Logf("config put with missing files: %s", out)
	switchtest.WaitFor(t, "the TLS listener's failure", func() bool { return strings.Contains(d.Logs(), "missing.pem") })
	switchtest.WantCode(t, bank.Send("0200", bank.Fields(debit)), "92")
	switchtest.WantCode(t, switchtest.ConnectBank(t, addr).Send("0200", bank.Fields(debit)), "92")
	switchtest.WantCard(t, d, pan, nil, 99000, 99000, 0)
}
