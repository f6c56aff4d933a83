package switchtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
	"github.com/goldcard/goldcard/locks"
	"github.com/goldcard/goldcard/switch/internal/client"
)

// Switch is a goldcard serve process started by a test.
type Switch struct {
	t     *testing.T
	Cmd   *exec.Cmd
	DB    string
	Etcd  string // client URL of the etcd it uses
	Bank  string // address of the default bank's listener
	Admin string // admin API address
	// Done receives the process's exit once it has exited.
	Done chan error
	// Env is added to the process's environment; by default it holds
	// $GOLDCARD_KEK=TestKEK.
	Env []string

	mu   sync.Mutex
	logs bytes.Buffer
}

// TestAuthTimeout is the built-in bank's auth timeout the switches of
// tests run with, unless a test gives its own --auth-timeout.
const TestAuthTimeout = "8s"

// On is a switch not yet started, on database db and the etcd at etcd
// (empty: an embedded etcd of its own, on a free port).
func On(t *testing.T, db, etcd string) *Switch {
	return &Switch{t: t, DB: db, Etcd: etcd, Done: make(chan error, 1), Env: []string{KEKEnv}}
}

// TestKEK is the key-encryption key the switches and tools of tests are
// given, and KEKEnv the environment entry that gives it.
const (
	TestKEK = "4b454b2074657374206b6579206f6620676f6c6463617264207377697463682e"
	KEKEnv  = "GOLDCARD_KEK=" + TestKEK
)

// Order is a redemption order as the admin API shows it.
type Order struct {
	ledger.Order
	Card string `json:"card_id"`
	PAN  string `json:"pan"` // masked
}

// Start runs goldcard serve on a fresh database with free ports and
// an embedded etcd of its own.
func Start(t *testing.T, args ...string) *Switch {
	t.Helper()
	d := On(t, ledgertest.NewDatabase(t), "")
	d.Start(args...)
	return d
}

// StartPeer runs a second goldcard serve on d's database and etcd.
func (d *Switch) StartPeer(args ...string) *Switch {
	d.t.Helper()
	p := On(d.t, d.DB, d.Etcd)
	p.Start(append([]string{"--etcd", d.Etcd}, args...)...)
	return p
}

// Start runs the switch and waits until it is ready, failing the test
// if it is not.
func (d *Switch) Start(args ...string) {
	d.t.Helper()
	embedded := d.Etcd == ""
	for try := 1; ; try++ {
		err := d.Launch(args...)
		if err == nil {
			return
		}
		// The port found free for the embedded etcd was taken before the
		// switch bound it (by another test process): try another.
		if !embedded || try == 5 || !strings.Contains(err.Error(), "address already in use") {
			d.t.Fatal(err)
		}
		d.Etcd, d.Done = "", make(chan error, 1)
		d.mu.Lock()
		d.logs.Reset()
		d.mu.Unlock()
	}
}

// Launch runs goldcard serve and waits until it is ready; an error is a
// switch that exited first, with its logs.
func (d *Switch) Launch(args ...string) error {
	t := d.t
	t.Helper()
	base := []string{"serve", "--db", d.DB, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--log-format", "json", "--drain-timeout", "20s"}
	if !slices.Contains(args, "--auth-timeout") && !slices.Contains(args, "--config") {
		// The flows are under test, not the deadline: a busy machine's
		// slow transaction must not turn an approval into a 91. A test of
		// the deadline names its own.
		base = append(base, "--auth-timeout", TestAuthTimeout)
	}
	if d.Etcd == "" {
		port, err := locks.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		d.Etcd = fmt.Sprintf("http://127.0.0.1:%d", port)
		base = append(base, "--etcd-listen", strings.TrimPrefix(d.Etcd, "http://"))
	}
	d.Cmd = exec.Command(Binary(t), append(base, args...)...)
	d.Cmd.Env = append(os.Environ(), d.Env...)
	stderr, err := d.Cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		signalled := false
		for sc.Scan() {
			line := sc.Bytes()
			d.mu.Lock()
			d.logs.Write(line)
			d.logs.WriteByte('\n')
			d.mu.Unlock()
			var e struct{ Msg, Addr, Bank string }
			_ = json.Unmarshal(line, &e)
			switch {
			case e.Msg == "bank listening" && e.Bank == "default":
				d.mu.Lock()
				d.Bank = e.Addr
				d.mu.Unlock()
			case e.Msg == "admin API listening":
				d.mu.Lock()
				d.Admin = e.Addr
				d.mu.Unlock()
			case e.Msg == "switch ready" && !signalled:
				signalled = true
				close(ready)
			}
		}
		d.Done <- d.Cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-d.Done:
		d.Done <- err
		return fmt.Errorf("goldcard serve exited: %v\n%s", err, d.Logs())
	case <-time.After(30 * time.Second):
		_ = d.Cmd.Process.Kill()
		return fmt.Errorf("goldcard serve not ready after 30s\n%s", d.Logs())
	}
	t.Cleanup(func() {
		if d.Cmd.ProcessState == nil {
			_ = d.Cmd.Process.Kill()
			<-d.Done
		}
		if t.Failed() {
			t.Logf("switch log:\n%s", d.Logs())
		}
	})
	return nil
}

// Logs returns everything the switch has logged.
func (d *Switch) Logs() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.String()
}

// Stop sends SIGTERM and waits for a clean exit.
func (d *Switch) Stop() {
	d.t.Helper()
	_ = d.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.Done:
		if err != nil {
			d.t.Fatalf("goldcard serve exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		d.t.Fatal("goldcard serve did not exit after SIGTERM")
	}
}

// API calls the admin API and decodes a JSON answer into out.
func (d *Switch) API(method, path string, body any, out any) int {
	d.t.Helper()
	raw, status, err := client.Admin(context.Background(), d.Admin, method, path, body)
	if err != nil {
		d.t.Fatal(err)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			d.t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	return status
}

// AddCard issues a CNY card with cash balance and fund position fund.
func (d *Switch) AddCard(pan string, balance, fund int64) {
	d.t.Helper()
	var v map[string]any
	if status := d.API("POST", "/v1/cards", map[string]any{"pan": pan, "currency": "156", "balance": balance, "fund_balance": fund}, &v); status != http.StatusCreated {
		d.t.Fatalf("creating card: HTTP %d %v", status, v)
	}
}

// Card reads the card with the PAN through the admin API.
func (d *Switch) Card(pan string) client.Card {
	d.t.Helper()
	var v client.Card
	if status := d.API("GET", "/v1/cards/"+d.CardID(pan), nil, &v); status != http.StatusOK {
		d.t.Fatalf("reading card: HTTP %d", status)
	}
	return v
}

// CardID finds the id the admin API names the card with the PAN by, for
// its /v1/cards/{id} paths.
func (d *Switch) CardID(pan string) string {
	d.t.Helper()
	var v struct{ Cards []client.Card }
	if status := d.API("POST", "/v1/cards/search", map[string]string{"pan": pan}, &v); status != http.StatusOK || len(v.Cards) != 1 {
		d.t.Fatalf("finding card: HTTP %d, %d cards", status, len(v.Cards))
	}
	return v.Cards[0].ID
}

// Metrics is the switch's /metrics text.
func (d *Switch) Metrics() string {
	d.t.Helper()
	resp, err := http.Get("http://" + d.Admin + "/metrics")
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// track2Data is what track 2 data looks like: a PAN, a separator and the
// expiry date with what follows.
var track2Data = regexp.MustCompile(`\d{13,19}[=D]\d{4}`)

// AssertNoSecrets fails if the logs hold any of the secrets (full PANs,
// track 2 data, PIN blocks) or anything shaped like track 2 data.
func (d *Switch) AssertNoSecrets(secrets ...string) {
	d.t.Helper()
	logs := d.Logs()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			d.t.Errorf("the switch logged the secret %s", s)
		}
	}
	if m := track2Data.FindString(logs); m != "" {
		d.t.Errorf("the switch logged track 2 data %s", m)
	}
}

// MetricValue is the value of one series of the switch's metrics, or -1
// when it is absent.
func (d *Switch) MetricValue(series string) float64 {
	d.t.Helper()
	for _, line := range strings.Split(d.Metrics(), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}

// InFlight reads goldcard_requests_in_flight for the default bank.
func (d *Switch) InFlight() int {
	m := regexp.MustCompile(`goldcard_requests_in_flight\{bank="default"\} (\d+)`).FindStringSubmatch(d.Metrics())
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// CardOrders lists a card's redemption orders through the admin API.
func (d *Switch) CardOrders(pan string) []Order {
	d.t.Helper()
	var v struct{ Orders []Order }
	if st := d.API("GET", "/v1/cards/"+d.CardID(pan)+"/orders", nil, &v); st != http.StatusOK {
		d.t.Fatalf("orders: HTTP %d", st)
	}
	return v.Orders
}

// PendingOrders counts the cards' redemption orders still pending.
func (d *Switch) PendingOrders(pans ...string) int {
	d.t.Helper()
	n := 0
	for _, pan := range pans {
		for _, o := range d.CardOrders(pan) {
			if o.State == ledger.OrderPending {
				n++
			}
		}
	}
	return n
}
