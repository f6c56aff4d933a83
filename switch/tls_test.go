package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
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
	"github.com/goldcard/goldcard/switch/internal/tool/bench"
)

// tlsBankJSON is a bank on addr whose listener uses the server
// certificate srv and asks for client certificates issued by clientCA,
// bound to subjects and pins.
func tlsBankJSON(addr string, acquirers []string, srv testCert, clientCA *testCA, subjects, pins []string) string {
	b := map[string]any{
		"listen": addr, "acquirers": acquirers,
		"tls": config.TLS{CertFile: srv.certFile, KeyFile: srv.keyFile, ClientCAFile: clientCA.file, ClientSubjects: subjects, ClientSPKISHA256: pins},
	}
	out, _ := json.Marshal(b)
	return string(out)
}

// echo is a network management echo's fields.
func (b *bankSim) echo() map[int]string {
	return b.fields(map[int]string{70: "301", 2: "", 32: "", 37: "", 41: "", 42: "", 49: ""})
}

// TestTLSBankListener: a bank on mutual TLS with its identity bound. Only
// a client with a certificate of the bank's CA that carries the bank's
// subject or key is let in; plain TCP is not. The switch's certificate is
// replaced on disk while a link is up: new connections see the new one,
// the link carries on, and a broken file keeps the old one.
func TestTLSBankListener(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	serverCA := newTestCA(t, dir, "server")
	banksCA := newTestCA(t, dir, "banks")
	rogueCA := newTestCA(t, dir, "rogue")
	srv := serverCA.issue("switch", "goldcard")
	acmeGW := banksCA.issue("acme-gw", "acme-gw")
	acmeDR := banksCA.issue("acme-dr", "acme-dr") // let in by its key pin
	beta := banksCA.issue("beta-gw", "beta-gw")   // the right CA, another bank
	rogue := rogueCA.issue("rogue", "acme-gw")    // the right name, another CA

	d := startDaemon(t, "--db-pool", "8")
	addr := freeAddr(t)
	out, err := goldcardCLI(t, tlsBankJSON(addr, nil, srv, banksCA, []string{"acme-gw"}, []string{acmeDR.spki}),
		"config", "put", "banks/acme", "-", "--etcd", d.etcd)
	if err != nil {
		t.Fatalf("config put banks/acme: %v\n%s", err, out)
	}
	waitFor(t, "acme's TLS listener", func() bool {
		refused, _ := tlsRefused(t, addr, clientConfig(t, serverCA, &acmeGW))
		return !refused
	})

	for _, tc := range []struct {
		name string
		cert *testCert
	}{
		{"no client certificate", nil},
		{"a certificate of another CA", &rogue},
		{"a certificate bound to another bank", &beta},
	} {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			if refused, err := tlsRefused(t, addr, clientConfig(t, serverCA, tc.cert)); !refused {
				t.Fatal("the handshake was accepted")
			} else {
				t.Logf("refused: %v", err)
			}
		})
	}
	t.Run("refused/plain TCP", func(t *testing.T) {
		b := &bankSim{t: t, d: mustDialect(t)}
		m, _ := client.NewMessage(b.d, "0800", b.echo())
		packed, _ := m.Pack()
		resp, err := dialRaw(t, addr).exchange(packed)
		if err == nil && bytes.HasPrefix(resp, []byte("0810")) {
			t.Fatal("a plain TCP client was answered")
		}
	})

	const pan = "6228480000000951"
	d.addCard(pan, 100000, 0)
	bank := connectBank(t, addr, client.WithTLS(clientConfig(t, serverCA, &acmeGW)))
	wantCode(t, bank.send("0800", bank.echo()), "00")
	r := bank.send("0200", bank.fields(map[int]string{2: pan, 3: "000000", 4: "000000001000"}))
	wantCode(t, r, "00")
	wantCard(t, d, pan, r, 99000, 99000, 0)
	dr := connectBank(t, addr, client.WithTLS(clientConfig(t, serverCA, &acmeDR)))
	wantCode(t, dr.send("0800", dr.echo()), "00")

	refusedTLS := regexp.MustCompile(`goldcard_connection_events_total\{bank="acme",event="refused_tls"\} (\d+)`)
	if m := refusedTLS.FindStringSubmatch(d.metrics()); m == nil {
		t.Error("refused handshakes not counted")
	} else if n, _ := strconv.Atoi(m[1]); n < 4 {
		t.Errorf("%d refused handshakes counted, want at least 4", n)
	}
	if !strings.Contains(d.Logs(), "TLS handshake failed") {
		t.Error("refused handshakes were not logged")
	}

	// The switch's certificate and key are replaced by ones of a new CA.
	serverCA2 := newTestCA(t, dir, "server2")
	srv2 := serverCA2.issue("switch2", "goldcard")
	copyFile(t, srv2.keyFile, srv.keyFile)
	copyFile(t, srv2.certFile, srv.certFile)
	waitFor(t, "the new certificate", func() bool {
		refused, _ := tlsRefused(t, addr, clientConfig(t, serverCA2, &acmeGW))
		return !refused
	})
	if refused, _ := tlsRefused(t, addr, clientConfig(t, serverCA, &acmeGW)); !refused {
		t.Error("a new connection was still shown the old certificate")
	}
	r = bank.send("0200", bank.fields(map[int]string{2: pan, 3: "000000", 4: "000000001000"}))
	wantCode(t, r, "00")
	wantCard(t, d, pan, r, 98000, 98000, 0)

	// A broken certificate file is reported once and not taken on.
	if err := os.WriteFile(srv.certFile, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Each handshake a check period after the last reads the files again.
	for range 3 {
		time.Sleep(1100 * time.Millisecond)
		if refused, err := tlsRefused(t, addr, clientConfig(t, serverCA2, &acmeGW)); refused {
			t.Fatalf("a broken certificate file was taken on: %v", err)
		}
	}
	waitFor(t, "the broken file to be reported", func() bool { return strings.Contains(d.Logs(), "TLS files not reloaded") })
	if n := strings.Count(d.Logs(), "TLS files not reloaded"); n != 1 {
		t.Errorf("the broken file was reported %d times, want once", n)
	}
	copyFile(t, srv2.certFile, srv.certFile)

	// The tools reach the bank with their --tls-* flags.
	tlsFlags := []string{"--tls-ca", serverCA2.file, "--tls-cert", acmeGW.certFile, "--tls-key", acmeGW.keyFile, "--tls-server-name", "localhost"}
	out, err = goldcardCLI(t, "", append([]string{"replay", "--addr", addr, "--admin", "http://" + d.admin, "../testdata/replay/core/network.yaml"}, tlsFlags...)...)
	if err != nil || !strings.Contains(out, " 0 failed") {
		t.Errorf("replay over TLS: %v\n%s", err, out)
	}
	out, err = goldcardCLI(t, "", append([]string{"bench", "auth", "--addr", addr, "--admin", "http://" + d.admin,
		"--cards", "4", "--conns", "1", "--concurrency", "2", "--duration", "300ms", "--json"}, tlsFlags...)...)
	var results []bench.Result
	if err == nil {
		err = json.Unmarshal([]byte(out[strings.Index(out, "["):]), &results)
	}
	if err != nil || len(results) != 1 || results[0].Requests == 0 || results[0].Errors != 0 {
		t.Errorf("bench auth over TLS: %v\n%s", err, out)
	}

	// TLS turned off: the listener is replaced by a plain one.
	out, err = goldcardCLI(t, `{"listen":"`+addr+`"}`, "config", "put", "banks/acme", "-", "--etcd", d.etcd)
	if err != nil {
		t.Fatalf("config put banks/acme: %v\n%s", err, out)
	}
	waitFor(t, "acme's plain listener", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		b := &bankSim{t: t, d: mustDialect(t)}
		m, _ := client.NewMessage(b.d, "0800", b.echo())
		packed, _ := m.Pack()
		resp, err := (&rawLink{c}).exchange(packed)
		return err == nil && bytes.HasPrefix(resp, []byte("0810"))
	})

	d.assertNoSecrets(pan)
	for _, f := range []string{srv.keyFile, srv2.keyFile} {
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
	serverCA := newTestCA(t, dir, "server")
	banksCA := newTestCA(t, dir, "banks")
	srvCert := serverCA.issue("switch", "goldcard")
	north := banksCA.issue("north", "north-gw")
	south := banksCA.issue("south", "south-gw")
	stranger := banksCA.issue("stranger", "west-gw")
	addr := freeAddr(t)
	srv, l := startServer(t,
		"banks/north", tlsBankJSON(addr, []string{"111"}, srvCert, banksCA, nil, []string{north.spki}),
		"banks/south", tlsBankJSON(addr, []string{"222"}, srvCert, banksCA, []string{"south-gw"}, nil))
	if got := srv.BankAddr("north"); got == nil || got.String() != addr {
		t.Fatalf("north listens on %v, not %s", got, addr)
	}
	ctx := context.Background()
	const pan = "6228480000000961"
	if _, err := l.CreateCard(ctx, ledger.NewCard{PAN: pan, Currency: "156", Balance: 100000}); err != nil {
		t.Fatal(err)
	}
	if refused, _ := tlsRefused(t, addr, clientConfig(t, serverCA, &stranger)); !refused {
		t.Error("a certificate bound to neither bank was let in")
	}

	debit := func(b *bankSim, acquirer, code string) {
		t.Helper()
		wantCode(t, b.send("0200", b.fields(map[int]string{2: pan, 3: "000000", 4: "000000000100", 32: acquirer})), code)
	}
	// A client that never starts its handshake holds up nobody (and does
	// not hold up shutdown either).
	idle := dialRaw(t, addr)
	n := connectBank(t, addr, client.WithTLS(clientConfig(t, serverCA, &north)))
	s := connectBank(t, addr, client.WithTLS(clientConfig(t, serverCA, &south)))
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
	if idle.closedWithin(100 * time.Millisecond) {
		t.Error("a connection still in its handshake was closed early")
	}
	// One address may have only so many handshakes under way; the next
	// connections from it are refused at once, and the links up carry on.
	// The switch takes connections in the order they were made.
	refused := func() float64 {
		return total(scrapeMetrics(t, srv.AdminAddr().String())["goldcard_connection_events_total"],
			map[string]string{"event": "refused_handshakes_per_address"})
	}
	stalled := []*rawLink{idle}
	for len(stalled) < maxHandshakesPerAddr+2 {
		stalled = append(stalled, dialRaw(t, addr))
	}
	waitFor(t, "two stalled handshakes over the limit to be refused", func() bool { return refused() == 2 })
	for i, raw := range stalled {
		if i < maxHandshakesPerAddr {
			if raw.closedWithin(100 * time.Millisecond) {
				t.Errorf("stalled handshake %d of one address refused, within the limit of %d", i+1, maxHandshakesPerAddr)
			}
			continue
		}
		raw.expectClosed(t)
	}
	debit(n, "111", "00")
}

// TestListenerTLSReload: the files are read again when they change, at
// most every checkEvery; a broken version is reported once and the
// certificate in use is kept.
func TestListenerTLSReload(t *testing.T) {
	dir := t.TempDir()
	ca1, ca2 := newTestCA(t, dir, "one"), newTestCA(t, dir, "two")
	banksCA := newTestCA(t, dir, "banks")
	cert := ca1.issue("switch", "goldcard")
	next := ca2.issue("next", "goldcard")
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	tc := config.TLS{CertFile: cert.certFile, KeyFile: cert.keyFile, ClientCAFile: banksCA.file, MinVersion: "1.3"}
	lt, err := newListenerTLS(tc, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	issuer := func() string { return lt.config().Certificates[0].Leaf.Issuer.CommonName }
	if c := lt.config(); c.MinVersion != tls.VersionTLS13 || c.ClientAuth != tls.RequireAndVerifyClientCert || c.ClientCAs == nil {
		t.Fatalf("config: min version %x, client auth %v", c.MinVersion, c.ClientAuth)
	}

	// Not looked at again within checkEvery.
	lt.checkEvery = time.Hour
	copyFile(t, next.keyFile, cert.keyFile)
	copyFile(t, next.certFile, cert.certFile)
	if got := issuer(); got != "one" {
		t.Fatalf("reloaded within checkEvery: issuer %s", got)
	}
	lt.checkEvery = 0
	if got := issuer(); got != "two" {
		t.Fatalf("not reloaded: issuer %s", got)
	}

	writeFileAtomic(t, cert.certFile, []byte("garbage"))
	for range 3 {
		if got := issuer(); got != "two" {
			t.Fatalf("a broken file was taken on: issuer %s", got)
		}
	}
	copyFile(t, next.certFile, cert.certFile)
	writeFileAtomic(t, banksCA.file, []byte("garbage"))
	_ = issuer()
	if n := strings.Count(logs.String(), "TLS files not reloaded"); n != 2 {
		t.Errorf("%d errors logged for two broken versions:\n%s", n, logs.String())
	}
	copyFile(t, filepath.Join(dir, "two-ca.pem"), banksCA.file)
	if got := issuer(); got != "two" || !strings.Contains(logs.String(), "TLS files reloaded") {
		t.Errorf("not reloaded after the repair: issuer %s\n%s", got, logs.String())
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Error("the key was logged")
	}

	for name, bad := range map[string]config.TLS{
		"missing key":      {CertFile: cert.certFile, KeyFile: filepath.Join(dir, "none.pem")},
		"key of another":   {CertFile: cert.certFile, KeyFile: ca1.issue("other", "x").keyFile},
		"CA without certs": {CertFile: cert.certFile, KeyFile: cert.keyFile, ClientCAFile: cert.keyFile},
	} {
		if _, err := newListenerTLS(bad, nil, log); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

func TestCertBound(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "banks")
	gw := ca.issue("gw", "acme-gw")
	leaf := clientConfig(t, ca, &gw).Certificates[0].Leaf
	for _, tc := range []struct {
		name string
		tls  *config.TLS
		leaf bool
		want bool
	}{
		{"plain TCP", nil, false, true},
		{"no binding, no certificate", &config.TLS{}, false, true},
		{"bound, no certificate", &config.TLS{ClientSubjects: []string{"acme-gw"}}, false, false},
		{"subject", &config.TLS{ClientSubjects: []string{"other", "acme-gw"}}, true, true},
		{"other subject", &config.TLS{ClientSubjects: []string{"other"}}, true, false},
		{"pin", &config.TLS{ClientSPKISHA256: []string{gw.spki}}, true, true},
		{"pin in capitals", &config.TLS{ClientSPKISHA256: []string{strings.ToUpper(gw.spki)}}, true, true},
		{"other pin", &config.TLS{ClientSubjects: []string{"other"}, ClientSPKISHA256: []string{strings.Repeat("ab", 32)}}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &config.Bank{Code: "acme", TLS: tc.tls}
			l := leaf
			if !tc.leaf {
				l = nil
			}
			if got := certBound(b, l); got != tc.want {
				t.Fatalf("certBound = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestTLSNeverPlain: a bank whose config turns TLS on is not served on a
// plain link, even while its TLS listener cannot open (here, a key file
// that does not exist) and the plain one it replaces keeps accepting.
func TestTLSNeverPlain(t *testing.T) {
	d := startDaemon(t, "--db-pool", "8")
	addr := freeAddr(t)
	if out, err := goldcardCLI(t, `{"listen":"`+addr+`"}`, "config", "put", "banks/acme", "-", "--etcd", d.etcd); err != nil {
		t.Fatalf("config put banks/acme: %v\n%s", err, out)
	}
	const pan = "6228480000000961"
	d.addCard(pan, 100000, 0)
	h, _ := iso.HeaderByName(iso.HeaderBinary2)
	waitFor(t, "acme's plain listener", func() bool {
		c, err := client.DialBank(context.Background(), addr, mustDialect(t), h)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	bank := connectBank(t, addr)
	debit := map[int]string{2: pan, 3: "000000", 4: "000000001000"}
	wantCode(t, bank.send("0200", bank.fields(debit)), "00")

	missing := filepath.Join(t.TempDir(), "missing.pem")
	cfg := fmt.Sprintf(`{"listen":%q,"tls":{"cert_file":%q,"key_file":%q}}`, addr, missing, missing)
	out, _ := goldcardCLI(t, cfg, "config", "put", "banks/acme", "-", "--etcd", d.etcd)
	t.Logf("config put with missing files: %s", out)
	waitFor(t, "the TLS listener's failure", func() bool { return strings.Contains(d.Logs(), "missing.pem") })
	wantCode(t, bank.send("0200", bank.fields(debit)), "92")
	wantCode(t, connectBank(t, addr).send("0200", bank.fields(debit)), "92")
	wantCard(t, d, pan, nil, 99000, 99000, 0)
}
