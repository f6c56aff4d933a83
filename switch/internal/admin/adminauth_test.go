package admin_test

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goldcard/goldcard/ledger/ledgertest"
	"github.com/goldcard/goldcard/locks"
	"github.com/goldcard/goldcard/switch/internal/switchtest"
	"github.com/goldcard/goldcard/switch/internal/switchtest/pki"
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
			cmd := exec.Command(switchtest.Binary(t), "serve", "--db", db, "--listen", "127.0.0.1:0",
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
	d := switchtest.Start(t, "--admin", "0.0.0.0:0", "--admin-token-file", tokenFile, "--admin-open", "/metrics,/healthz")
	base := "http://" + d.Admin
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
	if v := d.MetricValue(`goldcard_admin_refused_total{reason="wrong"}`); v != 1 {
		t.Errorf("wrong tokens counted %v, want 1", v)
	}
	if v := d.MetricValue(`goldcard_admin_refused_total{reason="missing"}`); v != 4 {
		t.Errorf("missing tokens counted %v, want 4", v)
	}
	if !strings.Contains(d.Logs(), `"msg":"admin API request refused"`) {
		t.Error("no refusal logged")
	}

	cli := func(env ...string) (string, error) {
		cmd := exec.Command(switchtest.Binary(t), "card", "show", "--pan", "6228480000000951", "--admin", base)
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
	d.AssertNoSecrets(token)
}

// TestAdminMTLS: over HTTPS with client certificates, a client with a
// certificate of the client CA is let in, one without is not, and one
// with a certificate of another CA fails the handshake.
func TestAdminMTLS(t *testing.T) {
	dir := t.TempDir()
	serverCA, clientCA, otherCA := pki.NewCA(t, dir, "server"), pki.NewCA(t, dir, "client"), pki.NewCA(t, dir, "other")
	srv := serverCA.Issue("goldcard", "goldcard")
	d := switchtest.Start(t, "--admin", "0.0.0.0:0", "--admin-tls-cert", srv.CertFile, "--admin-tls-key", srv.KeyFile,
		"--admin-client-ca", clientCA.File, "--admin-open", "/healthz")
	_, port, _ := net.SplitHostPort(d.Admin)
	base := "https://127.0.0.1:" + port
	client := func(ca *pki.CA) *http.Client {
		var cert *pki.Cert
		if ca != nil {
			c := ca.Issue("operator-"+ca.Name, "operator")
			cert = &c
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(t, serverCA, cert)}, Timeout: 5 * time.Second}
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
	cli := clientCA.Issue("cli", "cli")
	cmd := exec.Command(switchtest.Binary(t), "card", "show", "--pan", "6228480000000952", "--admin", base)
	cmd.Env = append(os.Environ(), "GOLDCARD_ADMIN_CA="+serverCA.File, "GOLDCARD_ADMIN_CERT="+cli.CertFile, "GOLDCARD_ADMIN_KEY="+cli.KeyFile)
	out, err := cmd.CombinedOutput()
	if !strings.Contains(string(out), "no card") && !strings.Contains(string(out), "not found") {
		t.Errorf("goldcard card show over mTLS: %v\n%s", err, out)
	}
}
