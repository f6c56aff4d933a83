package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/goldcard/goldcard/ledger/ledgertest"
	"github.com/goldcard/goldcard/locks"
)

// TestAdminExposure: an admin API reachable from other hosts without
// credentials is a usage error, found before the switch creates its
// database, its data directory or its embedded etcd, whatever the form of
// the address.
func TestAdminExposure(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		t.Run(addr, func(t *testing.T) {
			t.Parallel()
			port, err := locks.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			db := ledgertest.UnusedDatabase(t)
			dataDir := filepath.Join(t.TempDir(), "var")
			cmd := exec.Command(switchBinary(t), "serve", "--db", db, "--listen", "127.0.0.1:0",
				"--admin", addr, "--etcd-listen", fmt.Sprintf("127.0.0.1:%d", port), "--data-dir", dataDir)
			cmd.Env = append(os.Environ(), "GOLDCARD_ADMIN_TOKEN=")
			done := make(chan struct{})
			var out []byte
			go func() { out, err = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("goldcard serve kept running with an open admin API on %s", addr)
			}
			if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), "--admin "+addr) ||
				!strings.Contains(string(out), "reachable from other hosts") || !strings.Contains(string(out), "--admin-token-file") {
				t.Fatalf("serve --admin %s without credentials: exit %d, want 2 naming the address and the fix\n%s", addr, code, out)
			}
			if ledgertest.DatabaseExists(t, db) {
				t.Error("the refused switch created its database")
			}
			if _, err := os.Stat(dataDir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the refused switch made its data directory (and so maybe an etcd member): %v", err)
			}
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
				c.Close()
				t.Error("something listens on the refused switch's etcd address")
			}
			for _, step := range []string{"database created", "embedded etcd serving", "config center seeded"} {
				if strings.Contains(string(out), step) {
					t.Errorf("the refused switch went on to start (%s):\n%s", step, out)
				}
			}
		})
	}
}

// TestAdminToken: bound to every address with a token, the admin API
// answers only token holders, but for the paths left open; the CLI takes
// the token from the environment.
func TestAdminToken(t *testing.T) {
	const token = "s3cret-admin-token-4242"
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, "--admin", "0.0.0.0:0", "--admin-token-file", tokenFile, "--admin-open", "/metrics,/healthz")
	base := "http://" + d.admin
	call := func(method, path, bearer, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	card := `{"pan":"6228480000000951","currency":"156","balance":100}`
	for _, c := range []struct {
		method, path, bearer, body string
		want                       int
	}{
		{"GET", "/metrics", "", "", 200},
		{"GET", "/healthz", "", "", 200},
		{"GET", "/readyz", "", "", 401},
		{"GET", "/v1/config", "", "", 401},
		{"POST", "/v1/cards", "", card, 401},
		{"POST", "/v1/cards", "not-the-token", card, 401},
		{"POST", "/metrics", "", "", 401}, // open paths are open to reading only
		{"GET", "/v1/config", token, "", 200},
		{"POST", "/v1/cards", token, card, 201},
	} {
		if got := call(c.method, c.path, c.bearer, c.body); got != c.want {
			t.Errorf("%s %s (token %q): HTTP %d, want %d", c.method, c.path, c.bearer, got, c.want)
		}
	}
	if v := d.metricValue(`goldcard_admin_refused_total{reason="wrong"}`); v != 1 {
		t.Errorf("wrong tokens counted %v, want 1", v)
	}
	if v := d.metricValue(`goldcard_admin_refused_total{reason="missing"}`); v != 4 {
		t.Errorf("missing tokens counted %v, want 4", v)
	}
	if !strings.Contains(d.Logs(), `"msg":"admin API request refused"`) {
		t.Error("no refusal logged")
	}

	cli := func(env ...string) (string, error) {
		cmd := exec.Command(switchBinary(t), "card", "show", "--pan", "6228480000000951", "--admin", base)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := cli("GOLDCARD_ADMIN_TOKEN="); err == nil || !strings.Contains(out, "401") && !strings.Contains(out, "token") {
		t.Errorf("goldcard card show without a token: %v\n%s", err, out)
	}
	if out, err := cli("GOLDCARD_ADMIN_TOKEN=" + token); err != nil {
		t.Errorf("goldcard card show with $GOLDCARD_ADMIN_TOKEN: %v\n%s", err, out)
	}
	if out, err := cli("GOLDCARD_ADMIN_TOKEN=", "GOLDCARD_ADMIN_TOKEN_FILE="+tokenFile); err != nil {
		t.Errorf("goldcard card show with $GOLDCARD_ADMIN_TOKEN_FILE: %v\n%s", err, out)
	}
	d.assertNoSecrets(token)
}

// TestAdminMTLS: over HTTPS with client certificates, a client with a
// certificate of the client CA is let in, one without is not, and one
// with a certificate of another CA fails the handshake.
func TestAdminMTLS(t *testing.T) {
	dir := t.TempDir()
	serverCA, clientCA, otherCA := newTestCA(t, dir, "server"), newTestCA(t, dir, "client"), newTestCA(t, dir, "other")
	srv := serverCA.issue("goldcard", "goldcard")
	d := startDaemon(t, "--admin", "0.0.0.0:0", "--admin-tls-cert", srv.certFile, "--admin-tls-key", srv.keyFile,
		"--admin-client-ca", clientCA.file, "--admin-open", "/healthz")
	_, port, _ := net.SplitHostPort(d.admin)
	base := "https://127.0.0.1:" + port
	client := func(ca *testCA) *http.Client {
		var cert *testCert
		if ca != nil {
			c := ca.issue("operator-"+ca.name, "operator")
			cert = &c
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: clientConfig(t, serverCA, cert)}, Timeout: 5 * time.Second}
	}
	get := func(c *http.Client, path string) (int, error) {
		resp, err := c.Get(base + path)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(client(clientCA), "/v1/config"); err != nil || code != 200 {
		t.Errorf("client CA's certificate: %d %v", code, err)
	}
	if code, err := get(client(nil), "/v1/config"); err != nil || code != 401 {
		t.Errorf("no certificate: %d %v", code, err)
	}
	if code, err := get(client(nil), "/healthz"); err != nil || code != 200 {
		t.Errorf("no certificate, open path: %d %v", code, err)
	}
	if code, err := get(client(otherCA), "/v1/config"); err == nil {
		t.Errorf("another CA's certificate: HTTP %d, want a failed handshake", code)
	}
	// The CLI over HTTPS with the environment's certificates.
	cli := clientCA.issue("cli", "cli")
	cmd := exec.Command(switchBinary(t), "card", "show", "--pan", "6228480000000952", "--admin", base)
	cmd.Env = append(os.Environ(), "GOLDCARD_ADMIN_CA="+serverCA.file, "GOLDCARD_ADMIN_CERT="+cli.certFile, "GOLDCARD_ADMIN_KEY="+cli.keyFile)
	out, err := cmd.CombinedOutput()
	if !strings.Contains(string(out), "no card") && !strings.Contains(string(out), "not found") {
		t.Errorf("goldcard card show over mTLS: %v\n%s", err, out)
	}
}

// TestAdminRefusals: a wrong token is told apart from a missing one, in
// the answer, the metric and the log; the log has a line per peer at most
// once a second, the next line counting those held back, and never the
// token or a PAN of the path.
func TestAdminRefusals(t *testing.T) {
	t.Parallel()
	const (
		token = "right-token-5150"
		wrong = "wrong-token-6160"
		pan   = "6228480000000961"
	)
	var logs syncBuffer
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "refused"}, []string{"reason"})
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	guard := newAdminGuard(AdminAuth{Token: token}, refused, slog.New(slog.NewJSONHandler(&logs, nil)), ok)

	call := func(peer, bearer string) (int, string, string) {
		t.Helper()
		r := httptest.NewRequest(http.MethodPut, "/v1/cards/"+pan+"/status", strings.NewReader(`{}`))
		r.RemoteAddr = peer
		if bearer != "" {
			r.Header.Set("Authorization", "Bearer "+bearer)
		}
		w := httptest.NewRecorder()
		guard.ServeHTTP(w, r)
		var e struct{ Error string }
		_ = json.Unmarshal(w.Body.Bytes(), &e)
		return w.Code, e.Error, w.Header().Get("WWW-Authenticate")
	}
	if code, _, _ := call("192.0.2.1:1000", token); code != http.StatusNoContent {
		t.Fatalf("the right token: HTTP %d", code)
	}
	if code, reason, challenge := call("192.0.2.1:1001", ""); code != 401 || !strings.HasPrefix(reason, "missing bearer token") || !strings.HasPrefix(challenge, "Bearer ") {
		t.Errorf("no token: HTTP %d %q %q", code, reason, challenge)
	}
	if code, reason, challenge := call("192.0.2.1:1002", wrong); code != 401 || reason != "wrong bearer token" || !strings.Contains(challenge, "invalid_token") {
		t.Errorf("a wrong token: HTTP %d %q %q", code, reason, challenge)
	}
	for header, want := range map[string]int{
		"bearer " + token: http.StatusNoContent, "BEARER  " + token: http.StatusNoContent,
		"Bearer ": 401, "Basic " + token: 401, token: 401,
	} {
		r := httptest.NewRequest(http.MethodPut, "/v1/cards/"+pan+"/status", nil)
		r.RemoteAddr = "192.0.2.9:1"
		r.Header.Set("Authorization", header)
		w := httptest.NewRecorder()
		guard.ServeHTTP(w, r)
		if w.Code != want || want == 401 && !strings.Contains(w.Body.String(), "missing bearer token") {
			t.Errorf("Authorization: %s: HTTP %d %s, want %d", header, w.Code, w.Body, want)
		}
	}

	// A burst from one host, over several ports, and one from another.
	const burst = 20
	start := time.Now()
	for i := range burst {
		call(fmt.Sprintf("198.51.100.7:%d", 2000+i), wrong)
	}
	burstTook := time.Since(start)
	call("[2001:db8::1]:3000", "")
	// Once a second has passed, the host's next refusal is logged with
	// the count of those held back.
	time.Sleep(1100 * time.Millisecond)
	call("198.51.100.7:4000", "")

	type line struct {
		Level, Msg, Peer, Method, Path, Reason string
		Suppressed                             int
	}
	var lines []line
	for _, raw := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var l line
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			t.Fatalf("log line %q: %v", raw, err)
		}
		lines = append(lines, l)
	}
	byPeer := map[string][]line{}
	for _, l := range lines {
		if l.Level != "WARN" || l.Msg != "admin API request refused" || l.Method != "PUT" || l.Path != "/v1/cards/622848******0961/status" {
			t.Errorf("log line %+v", l)
		}
		byPeer[l.Peer] = append(byPeer[l.Peer], l)
	}
	if got := byPeer["192.0.2.1"]; len(got) != 1 || got[0].Reason != refusedMissing {
		t.Errorf("192.0.2.1's lines: %+v (its second refusal, within the second, is held back)", got)
	}
	if got := byPeer["2001:db8::1"]; len(got) != 1 || got[0].Reason != refusedMissing {
		t.Errorf("2001:db8::1's lines: %+v", got)
	}
	host := byPeer["198.51.100.7"]
	accounted := 0
	for _, l := range host {
		accounted += 1 + l.Suppressed
	}
	last := host[len(host)-1]
	if accounted != burst+1 || last.Reason != refusedMissing || host[0].Reason != refusedWrong {
		t.Errorf("198.51.100.7's lines %+v account for %d refusals, want %d", host, accounted, burst+1)
	}
	if burstTook < time.Second && (len(host) != 2 || last.Suppressed != burst-1) {
		t.Errorf("a burst of %d in %v logged as %+v, want one line and then one counting %d held back", burst, burstTook, host, burst-1)
	}
	if v := counterValue(t, refused, refusedWrong); v != burst+1 {
		t.Errorf("wrong tokens counted %v, want %d", v, burst+1)
	}
	if v := counterValue(t, refused, refusedMissing); v != 6 {
		t.Errorf("missing tokens counted %v, want 6", v)
	}
	for _, secret := range []string{token, wrong, pan} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds %s:\n%s", secret, logs.String())
		}
	}
}

// counterValue reads one series of a counter vector.
func counterValue(t *testing.T, c *prometheus.CounterVec, labels ...string) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.WithLabelValues(labels...).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
