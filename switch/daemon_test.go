package main

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
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goldcard/goldcard/ledger/ledgertest"
	"github.com/goldcard/goldcard/locks"
	"github.com/goldcard/goldcard/switch/internal/client"
)

// The switch binary, built once by the first test that runs it.
var (
	buildOnce   sync.Once
	goldcardBin string
	buildErr    error
	binDir      string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func switchBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "goldcard-bin"); buildErr != nil {
			return
		}
		goldcardBin = filepath.Join(binDir, "goldcard")
		out, err := exec.Command("go", "build", "-o", goldcardBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building goldcard: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return goldcardBin
}

// daemon is a goldcard serve process started by a test.
type instance struct {
	t     *testing.T
	cmd   *exec.Cmd
	db    string
	etcd  string // client URL of the etcd it uses
	bank  string // address of the default bank's listener
	admin string // admin API address
	done  chan error

	mu   sync.Mutex
	logs bytes.Buffer
}

// startDaemon runs goldcard serve on a fresh database with free ports and
// an embedded etcd of its own.
func startDaemon(t *testing.T, args ...string) *instance {
	t.Helper()
	d := &instance{t: t, db: ledgertest.NewDatabase(t), done: make(chan error, 1)}
	d.start(args...)
	return d
}

// startPeer runs a second goldcard serve on d's database and etcd.
func (d *instance) startPeer(args ...string) *instance {
	d.t.Helper()
	p := &instance{t: d.t, db: d.db, done: make(chan error, 1), etcd: d.etcd}
	p.start(append([]string{"--etcd", d.etcd}, args...)...)
	return p
}

func (d *instance) start(args ...string) {
	d.t.Helper()
	if err := d.launch(args...); err != nil {
		d.t.Fatal(err)
	}
}

// launch runs goldcard serve and waits until it is ready; an error is a
// switch that exited first, with its logs.
func (d *instance) launch(args ...string) error {
	t := d.t
	t.Helper()
	base := []string{"serve", "--db", d.db, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--data-dir", t.TempDir(), "--log-format", "json", "--drain-timeout", "20s"}
	if d.etcd == "" {
		port, err := locks.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		d.etcd = fmt.Sprintf("http://127.0.0.1:%d", port)
		base = append(base, "--etcd-listen", strings.TrimPrefix(d.etcd, "http://"))
	}
	d.cmd = exec.Command(switchBinary(t), append(base, args...)...)
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
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
				d.bank = e.Addr
				d.mu.Unlock()
			case e.Msg == "admin API listening":
				d.mu.Lock()
				d.admin = e.Addr
				d.mu.Unlock()
			case e.Msg == "switch ready" && !signalled:
				signalled = true
				close(ready)
			}
		}
		d.done <- d.cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-d.done:
		d.done <- err
		return fmt.Errorf("goldcard serve exited: %v\n%s", err, d.Logs())
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		return fmt.Errorf("goldcard serve not ready after 30s\n%s", d.Logs())
	}
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("switch log:\n%s", d.Logs())
		}
	})
	return nil
}

// Logs returns everything the switch has logged.
func (d *instance) Logs() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (d *instance) stop() {
	d.t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Fatalf("goldcard serve exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		d.t.Fatal("goldcard serve did not exit after SIGTERM")
	}
}

// api calls the admin API and decodes a JSON answer into out.
func (d *instance) api(method, path string, body any, out any) int {
	d.t.Helper()
	raw, status, err := client.Admin(context.Background(), d.admin, method, path, body)
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

func (d *instance) addCard(pan string, balance, fund int64) {
	d.t.Helper()
	var v map[string]any
	if status := d.api("POST", "/v1/cards", map[string]any{"pan": pan, "currency": "156", "balance": balance, "fund_balance": fund}, &v); status != http.StatusCreated {
		d.t.Fatalf("creating card: HTTP %d %v", status, v)
	}
}

// card reads the card with the PAN through the admin API.
func (d *instance) card(pan string) cardView {
	d.t.Helper()
	var v cardView
	if status := d.api("GET", "/v1/cards/"+d.cardID(pan), nil, &v); status != http.StatusOK {
		d.t.Fatalf("reading card: HTTP %d", status)
	}
	return v
}

// cardID finds the id the admin API names the card with the PAN by, for
// its /v1/cards/{id} paths.
func (d *instance) cardID(pan string) string {
	d.t.Helper()
	var v struct{ Cards []cardView }
	if status := d.api("POST", "/v1/cards/search", map[string]string{"pan": pan}, &v); status != http.StatusOK || len(v.Cards) != 1 {
		d.t.Fatalf("finding card: HTTP %d, %d cards", status, len(v.Cards))
	}
	return v.Cards[0].ID
}

func (d *instance) metrics() string {
	d.t.Helper()
	resp, err := http.Get("http://" + d.admin + "/metrics")
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

// assertNoSecrets fails if the logs hold any of the secrets (full PANs,
// track 2 data, PIN blocks) or anything shaped like track 2 data.
func (d *instance) assertNoSecrets(secrets ...string) {
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
