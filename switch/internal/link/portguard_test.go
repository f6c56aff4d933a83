package link_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/ledger/ledgertest"
	"github.com/goldcard/goldcard/locks/etcdtest"
	"github.com/goldcard/goldcard/switch/internal/link"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
)

const acceptedSeries = `goldcard_connection_events_total{bank="default",event="accepted"}`

// foreignRefusal and strangerRefusal are what a switch says of a port
// served by a switch of another identity, and by a stranger.
func foreignRefusal(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return "bank port :" + port + " is served by another Goldcard switch (other config center or database): refusing to share it"
}

func strangerRefusal(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return "bank port :" + port + " is held by a program that is not a Goldcard switch"
}

// echo sends an 0800 echo test on a connection of its own and checks the
// answer.
func echo(t *testing.T, addr string, stan int) {
	t.Helper()
	raw := switchtest.DialRaw(t, addr)
	defer raw.Conn.Close()
	resp, err := raw.Exchange(switchtest.EchoFrame(t, stan))
	if err != nil {
		t.Fatalf("echo %d on %s: %v", stan, addr, err)
	}
	if !bytes.HasPrefix(resp, []byte("0810")) {
		t.Fatalf("echo %d on %s answered %q", stan, addr, resp)
	}
}

// allEchoesAnsweredBy sends n echoes to addr, each on a connection of its
// own, and checks that d accepted every one of them.
func allEchoesAnsweredBy(t *testing.T, d *switchtest.Switch, addr string, n int) {
	t.Helper()
	before := max(d.MetricValue(acceptedSeries), 0) // absent before the first
	for i := range n {
		echo(t, addr, 400000+i)
	}
	if got := d.MetricValue(acceptedSeries) - before; got != float64(n) {
		t.Fatalf("the switch serving %s accepted %v of %d connections", addr, got, n)
	}
}

// notStarted launches a switch of its own database and config center on
// args, and checks that it exits with want, never having listened for a
// bank.
func notStarted(t *testing.T, want string, args ...string) {
	t.Helper()
	d := switchtest.On(t, ledgertest.NewDatabase(t), "")
	if err := d.Launch(args...); err == nil {
		t.Fatal("the switch started")
	}
	if code := d.Cmd.ProcessState.ExitCode(); code == 0 {
		t.Errorf("the refused switch exited with %d", code)
	}
	logs := d.Logs()
	if !strings.Contains(logs, want) {
		t.Fatalf("the switch did not say %q:\n%s", want, logs)
	}
	if strings.Contains(logs, `"msg":"bank listening"`) {
		t.Fatalf("the refused switch listened for a bank:\n%s", logs)
	}
}

// waitReporting waits until d reports to its config center, so that
// config put waits for it.
func waitReporting(t *testing.T, d *switchtest.Switch) {
	t.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: []string{d.Etcd}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	switchtest.WaitFor(t, "the switch to report to its config center", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		live, _, err := config.Instances(ctx, cl, "/goldcard/")
		return err == nil && len(live) > 0
	})
}

// TestBankPortOfAnotherSwitch: a switch of another database and config
// center does not start on a bank port a switch serves, and none of the
// connections to the port reach it; a switch of the same database and
// config center shares the port.
func TestBankPortOfAnotherSwitch(t *testing.T) {
	t.Parallel()
	addr := switchtest.FreeAddr(t)
	first := switchtest.Start(t, "--listen", addr)
	notStarted(t, foreignRefusal(addr), "--listen", addr)
	allEchoesAnsweredBy(t, first, addr, 50)

	peer := first.StartPeer("--listen", addr)
	if peer.Bank != addr {
		t.Fatalf("the peer listens on %s, not %s", peer.Bank, addr)
	}
	firstBefore := max(first.MetricValue(acceptedSeries), 0)
	stan := 500000
	switchtest.WaitFor(t, "both switches to take connections on the shared port", func() bool {
		stan++
		echo(t, addr, stan)
		return first.MetricValue(acceptedSeries) > firstBefore && peer.MetricValue(acceptedSeries) > 0
	})
}

// TestBankPortRefusedOnConfigChange: a bank put on a port a switch of
// another identity serves is not served there; config put names the port,
// the switch keeps the listeners it had (a bank moved there is still served
// where it was) and the port's connections stay its owner's.
func TestBankPortRefusedOnConfigChange(t *testing.T) {
	t.Parallel()
	addr := switchtest.FreeAddr(t)
	owner := switchtest.Start(t, "--listen", addr)
	d := switchtest.Start(t)
	waitReporting(t, d)
	home := d.Bank
	want := foreignRefusal(addr)

	out, err := switchtest.CLI(t, `{"listen":"`+addr+`","acquirers":["777"]}`, "config", "put", "banks/acme", "-", "--etcd", d.Etcd)
	if err == nil || !strings.Contains(out, want) {
		t.Fatalf("config put of a bank on another switch's port: %v\n%s", err, out)
	}
	t.Logf("config put:\n%s", out)
	var st config.Report
	d.API("GET", "/v1/config/status", nil, &st)
	if !strings.Contains(st.Warning, want) {
		t.Fatalf("the switch reports %q", st.Warning)
	}
	if !strings.Contains(d.Logs(), want) {
		t.Fatal("the switch did not log the refusal")
	}

	out, err = switchtest.CLI(t, `{"listen":"`+addr+`"}`, "config", "put", "banks/default", "-", "--etcd", d.Etcd)
	if err == nil || !strings.Contains(out, want) {
		t.Fatalf("config put moving a bank onto another switch's port: %v\n%s\nswitch:\n%s", err, out, d.Logs())
	}
	// Retiring a listener is logged before it stops accepting.
	for _, line := range strings.Split(d.Logs(), "\n") {
		if strings.Contains(line, `"msg":"bank listener retired`) && strings.Contains(line, `"bank":"default"`) {
			t.Fatalf("the default bank's listener was retired: %s", line)
		}
	}
	echo(t, home, 300001)
	allEchoesAnsweredBy(t, owner, addr, 50)
}

// TestBankPortOfAStranger: a port held with SO_REUSEPORT by a program
// that is not a Goldcard switch is refused, at start and on a config
// change (on another address of the port), and its connections stay the
// program's.
func TestBankPortOfAStranger(t *testing.T) {
	t.Parallel()
	ln, err := (&net.ListenConfig{Control: link.ReusePort}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	addr := ln.Addr().String()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_, _ = c.Write([]byte("stranger"))
			c.Close()
		}
	}()
	want := strangerRefusal(addr)
	notStarted(t, want, "--listen", addr)

	d := switchtest.Start(t)
	waitReporting(t, d)
	_, port, _ := net.SplitHostPort(addr)
	out, err := switchtest.CLI(t, `{"listen":":`+port+`"}`, "config", "put", "banks/acme", "-", "--etcd", d.Etcd)
	if err == nil || !strings.Contains(out, want) {
		t.Fatalf("config put of a bank on a stranger's port: %v\n%s", err, out)
	}

	before := accepted.Load()
	const n = 50
	for i := range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(b) != "stranger" {
			t.Fatalf("connection %d to the stranger's port: %q, %v", i, b, err)
		}
	}
	if got := accepted.Load() - before; got != n {
		t.Fatalf("the stranger accepted %d of %d connections", got, n)
	}
}

// TestBankPortRace: of two switches of different identities started at
// once on one port, at most one serves it.
func TestBankPortRace(t *testing.T) {
	t.Parallel()
	addr := switchtest.FreeAddr(t)
	var ds [2]*switchtest.Switch
	for i := range ds {
		ds[i] = switchtest.On(t, ledgertest.NewDatabase(t), "")
	}
	var errs [2]error
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() { errs[i] = d.Launch("--listen", addr) })
	}
	wg.Wait()
	if errs[0] == nil && errs[1] == nil {
		t.Fatalf("two switches of different identities serve %s", addr)
	}
	for i, err := range errs {
		if err != nil && !strings.Contains(ds[i].Logs(), foreignRefusal(addr)) {
			t.Fatalf("a switch did not start, for another reason: %v", err)
		}
		if err == nil && ds[i].Bank != addr {
			t.Fatalf("the switch that started listens on %s, not %s", ds[i].Bank, addr)
		}
	}
}

// identityOf is the identity a switch said it started with.
func identityOf(t *testing.T, d *switchtest.Switch) string {
	t.Helper()
	for _, line := range strings.Split(d.Logs(), "\n") {
		if _, rest, ok := strings.Cut(line, `"msg":"switch ready"`); ok {
			if _, id, ok := strings.Cut(rest, `"identity":"`); ok {
				id, _, _ = strings.Cut(id, `"`)
				return id
			}
		}
	}
	t.Fatal("the switch did not say its identity")
	return ""
}

// TestIdentityWithConfigCenterDown: a switch restarted while its config
// center is down knows the config center from before, and starts as the
// same switch; one that never reached it opens no bank port.
func TestIdentityWithConfigCenterDown(t *testing.T) {
	t.Parallel()
	cluster := etcdtest.New(t, 1)
	etcd := cluster.Endpoints()[0]
	db := ledgertest.NewDatabase(t)
	dataDir := t.TempDir()
	addr := switchtest.FreeAddr(t)
	d := switchtest.On(t, db, etcd)
	d.Start("--etcd", etcd, "--data-dir", dataDir, "--listen", addr)
	d.Stop()
	cluster.Stop(0)

	again := switchtest.On(t, db, etcd)
	again.Start("--etcd", etcd, "--data-dir", dataDir, "--listen", addr)
	if a, b := identityOf(t, d), identityOf(t, again); a != b {
		t.Fatalf("restarted with etcd down, the switch is %s, not %s", b, a)
	}
	echo(t, addr, 1)

	fresh := switchtest.On(t, db, etcd)
	if err := fresh.Launch("--etcd", etcd, "--listen", switchtest.FreeAddr(t)); err == nil {
		t.Fatal("a switch that never reached its config center started")
	}
	if !strings.Contains(fresh.Logs(), "has not met it before") {
		t.Fatalf("the switch did not say why it stopped:\n%s", fresh.Logs())
	}
}
