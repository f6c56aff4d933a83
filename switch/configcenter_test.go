package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger/ledgertest"
	"github.com/goldcard/goldcard/locks/etcdtest"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

// TestConfigCenter: three switches on one host share a three-node etcd,
// one PostgreSQL and (SO_REUSEPORT) one bank port. Banks are added and
// broken config refused at run time; etcd nodes die and come back.
func TestConfigCenter(t *testing.T) {
	cluster := etcdtest.New(t, 3)
	etcd := strings.Join(cluster.Endpoints(), ",")
	db := ledgertest.NewDatabase(t)
	shared := switchtest.FreeAddr(t)
	var sw []*switchtest.Switch
	for i := range 3 {
		d := switchtest.On(t, db, etcd)
		d.Start("--etcd", etcd, "--listen", shared, "--instance-id", fmt.Sprintf("switch-%d", i))
		sw = append(sw, d)
	}
	for _, d := range sw {
		if d.Bank != shared {
			t.Fatalf("a switch listens on %s, not the shared %s", d.Bank, shared)
		}
	}
	cli := func(stdin string, args ...string) (string, error) {
		return switchtest.CLI(t, stdin, append(args, "--etcd", etcd)...)
	}
	const pan, cashOnly = "6228480000000801", "6228480000000802"
	sw[0].AddCard(pan, 100000, 100000)
	sw[0].AddCard(cashOnly, 100000, 0)

	// A bank with binary bitmaps and a 4-digit ASCII header, at run time.
	acme := switchtest.FreeAddr(t)
	out, err := cli(`{"name":"Acme","listen":"`+acme+`","dialect":"iso87-ascii-binbitmap","header":"ascii4","acquirers":["777"]}`,
		"config", "put", "banks/acme", "-")
	if err != nil || strings.Count(out, " applied ") != 3 {
		t.Fatalf("config put banks/acme: %v\n%s", err, out)
	}
	d, _ := iso.Builtin("iso87-ascii-binbitmap")
	h, _ := iso.HeaderByName(iso.HeaderASCII4)
	switchtest.WaitFor(t, "acme's listener", func() bool {
		c, err := client.DialBank(context.Background(), acme, d, h)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	c, err := client.DialBank(context.Background(), acme, d, h)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	acmeBank := switchtest.NewBank(t, d, c, 600000)
	r := acmeBank.Send("0200", acmeBank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000001000", 32: "777"}))
	switchtest.WantCode(t, r, "00")
	if r[0] != "0210" {
		t.Fatalf("acme answered %v", r)
	}

	// Limits at accept time: one connection at most, then only 10/8.
	out, err = cli(`{"name":"Acme","listen":"`+acme+`","dialect":"iso87-ascii-binbitmap","header":"ascii4","acquirers":["777"],"max_connections":1}`,
		"config", "put", "banks/acme", "-")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Three switches allow one link each and acme's first is still open:
	// of three more, at least one is refused.
	for range 3 {
		switchtest.DialRaw(t, acme)
	}
	switchtest.WaitFor(t, "a link over acme's limit to be refused", func() bool {
		refused := 0.0
		for _, d := range sw {
			refused += max(0, d.MetricValue(`goldcard_connection_events_total{bank="acme",event="refused_max_connections"}`))
		}
		return refused >= 1
	})
	out, err = cli(`{"name":"Acme","listen":"`+acme+`","dialect":"iso87-ascii-binbitmap","header":"ascii4","acquirers":["777"],"allowed_cidrs":["10.0.0.0/8"]}`,
		"config", "put", "banks/acme", "-")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	switchtest.DialRaw(t, acme).ExpectClosed(t)
	refused := 0
	for _, d := range sw {
		if strings.Contains(d.Metrics(), `goldcard_connection_events_total{bank="acme",event="refused_max_connections"}`) {
			refused++
		}
	}
	if refused == 0 {
		t.Error("no switch counted the refused connection")
	}
	// Disabled, its listener closes.
	if out, err := cli(`{"listen":"`+acme+`","dialect":"iso87-ascii-binbitmap","header":"ascii4","enabled":false}`, "config", "put", "banks/acme", "-"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	switchtest.WaitFor(t, "acme's listener to close", func() bool {
		c, err := net.DialTimeout("tcp", acme, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	// ...and its links' series go: a bank out of service is no link down.
	for _, d := range sw {
		switchtest.WaitFor(t, "acme's connection series to go", func() bool {
			return !strings.Contains(d.Metrics(), `goldcard_connections{bank="acme"`)
		})
	}

	// A dialect that does not build is refused by config put...
	out, err = cli(`{"name":"broken","fields":{"0":{"type":"String","length":4,"enc":"ASCII","prefix":"ASCII.QQ"}}}`, "config", "put", "dialects/broken", "-")
	if err == nil || !strings.Contains(out, "refused, nothing written") {
		t.Fatalf("a broken dialect was put: %v\n%s", err, out)
	}
	// ...and, written straight into etcd, by every switch, which keep
	// serving on what they had.
	etcdClient := cluster.Client()
	bad, err := etcdClient.Put(context.Background(), config.ConfigKey("/goldcard/", "dialects/broken"), `{"name":"broken","fields":{"0":null}}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range sw {
		switchtest.WaitFor(t, "the switch to refuse the broken dialect", func() bool {
			var st config.Report
			d.API("GET", "/v1/config/status", nil, &st)
			return st.Rejected == bad.Header.Revision && st.Error != ""
		})
		if !strings.Contains(d.Metrics(), "goldcard_config_rejected_total 1") {
			t.Errorf("rejection not counted")
		}
	}
	bank := switchtest.ConnectBank(t, shared)
	switchtest.WantCode(t, bank.Send("0200", bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000001000"})), "00")
	if _, err := cli("", "config", "delete", "dialects/broken"); err != nil {
		t.Fatal(err)
	}

	// One etcd node of three dies: locks and config carry on, once the
	// switches' sessions are on a live node (a debit meanwhile may be
	// answered 91 in time; its order is followed up).
	cluster.Stop(0)
	switchtest.WaitFor(t, "a debit needing the card's lock to be approved", func() bool {
		return bank.Send("0200", bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000100000"}))[39] == "00"
	})
	out, err = switchtest.CLI(t, `{"redemption_quota": 2000000}`, "config", "put", "limits", "-",
		"--etcd", strings.Join(cluster.Endpoints()[1:], ","))
	if err != nil || strings.Count(out, " applied ") != 3 {
		t.Fatalf("config put with a node down: %v\n%s", err, out)
	}

	// All of etcd down: debits the cash covers go on.
	cluster.Stop(1)
	cluster.Stop(2)
	switchtest.WantCode(t, bank.Send("0200", bank.Fields(map[int]string{2: cashOnly, 3: "000000", 4: "000000000100"})), "00")

	// etcd back: changes made now arrive everywhere.
	cluster.Start(0, 1, 2)
	var last error
	switchtest.WaitFor(t, "a change after etcd's return to reach every switch", func() bool {
		out, last = cli(`{"redemption_quota": 3000000}`, "config", "put", "limits", "-", "--timeout", "3s")
		return last == nil && strings.Count(out, " applied ") == 3
	})
	for _, d := range sw {
		var cfg struct{ Limits config.Limits }
		d.API("GET", "/v1/config", nil, &cfg)
		if cfg.Limits.RedemptionQuota != 3000000 {
			t.Fatalf("a switch runs on quota %d", cfg.Limits.RedemptionQuota)
		}
	}

	// How fast: a few changes through the benchmark command.
	out, err = cli("", "bench", "config", "--changes", "200")
	if err != nil {
		t.Fatalf("bench config: %v\n%s", err, out)
	}
	t.Log(strings.TrimSpace(out))
}

// TestRollingRestart: a new switch binds the bank port beside a running
// one (SO_REUSEPORT), the old one drains, and clients connecting all along
// are all answered. Without net.ipv4.tcp_migrate_req, a connection the
// kernel queued on the old listener in the instant between its last accept
// and its close is reset, before any request on it was read: the client
// connects again. Those few are counted, never a refusal or a request left
// unanswered.
func TestRollingRestart(t *testing.T) {
	t.Parallel()
	migrate, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_migrate_req")
	resetsAllowed := strings.TrimSpace(string(migrate)) != "1"
	var resets atomic.Int64
	cluster := etcdtest.New(t, 1)
	etcd := cluster.Endpoints()[0]
	addr := switchtest.FreeAddr(t)
	old := switchtest.On(t, ledgertest.NewDatabase(t), etcd)
	old.Start("--etcd", etcd, "--listen", addr)
	const pan = "6228480000000901"
	old.AddCard(pan, 1000000, 0)
	stop := make(chan struct{})
	errs := make(chan error, 1)
	var answered atomic.Int64
	go func() {
		d, _ := iso.Builtin(iso.DefaultDialect)
		for i := 0; ; i++ {
			select {
			case <-stop:
				errs <- nil
				return
			default:
			}
			// A plain socket: moov's client may report a response and the
			// close that follows it in either order.
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- fmt.Errorf("connection %d refused: %w", i, err)
				return
			}
			raw := &switchtest.Raw{Conn: c}
			b := switchtest.NewBank(t, d, nil, int64(700000+i))
			m, _ := client.NewMessage(d, "0800", b.Fields(map[int]string{70: "301", 2: "", 32: "", 37: "", 41: "", 42: "", 49: ""}))
			packed, _ := m.Pack()
			resp, err := raw.Exchange(packed)
			c.Close()
			if errors.Is(err, syscall.ECONNRESET) && resetsAllowed && resets.Add(1) <= 5 {
				continue // reset unread, while queued on a closing listener
			}
			if err != nil {
				errs <- fmt.Errorf("connection %d not answered: %w", i, err)
				return
			}
			if !bytes.HasPrefix(resp, []byte("0810")) {
				errs <- fmt.Errorf("connection %d answered %q", i, resp)
				return
			}
			answered.Add(1)
		}
	}()
	// Connections are made and answered before, during and after the
	// hand-over.
	waitAnswered := func(more int64) {
		want := answered.Load() + more
		switchtest.WaitFor(t, "connections to be answered", func() bool {
			select {
			case err := <-errs:
				t.Fatal(err)
			default:
			}
			return answered.Load() >= want
		})
	}
	waitAnswered(20)
	next := old.StartPeer()
	if next.Bank != addr {
		t.Fatalf("the new switch listens on %s, not %s", next.Bank, addr)
	}
	waitAnswered(20)
	old.Stop()
	waitAnswered(20)
	close(stop)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if n := resets.Load(); n > 0 {
		t.Logf("%d connections reset as the old listener closed (net.ipv4.tcp_migrate_req is off)", n)
	}
	bank := switchtest.ConnectBank(t, addr)
	switchtest.WantCode(t, bank.Send("0200", bank.Fields(map[int]string{2: pan, 3: "000000", 4: "000000000100"})), "00")
}

// TestRefusesInvalidConfigCenter: a switch does not start on something
// else when etcd answers with a config it cannot run.
func TestRefusesInvalidConfigCenter(t *testing.T) {
	t.Parallel()
	cluster := etcdtest.New(t, 1)
	if _, err := cluster.Client().Put(context.Background(), config.ConfigKey("/goldcard/", "banks/acme"), `{"listen":":9000","dialect":"missing"}`); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(switchtest.Binary(t), "serve", "--db", ledgertest.NewDatabase(t), "--etcd", cluster.Endpoints()[0],
		"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--data-dir", t.TempDir())
	cmd.Env = append(os.Environ(), switchtest.KEKEnv)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `dialect "missing" does not exist`) {
		t.Fatalf("serve on an invalid config: %v\n%s", err, out)
	}
}
