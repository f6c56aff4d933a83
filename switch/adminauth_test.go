package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
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
)

// testCA is a certificate authority made for a test.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	dir     string
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), dir: t.TempDir()}
	return ca
}

// file writes the CA's certificate and returns its path.
func (ca *testCA) file(t *testing.T) string {
	t.Helper()
	p := filepath.Join(ca.dir, "ca.pem")
	if err := os.WriteFile(p, ca.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// issue makes a certificate for cn, valid for 127.0.0.1 and localhost,
// and returns the paths of its PEM certificate and key.
func (ca *testCA) issue(t *testing.T, cn string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestAdminExposure: an admin API reachable from other hosts without
// credentials is refused at start.
func TestAdminExposure(t *testing.T) {
	port, err := locks.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(switchBinary(t), "serve", "--db", ledgertest.NewDatabase(t), "--listen", "127.0.0.1:0",
		"--admin", "0.0.0.0:0", "--etcd-listen", fmt.Sprintf("127.0.0.1:%d", port), "--data-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "GOLDCARD_ADMIN_TOKEN=")
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("goldcard serve kept running with an open admin API on 0.0.0.0")
	}
	if err == nil || !strings.Contains(string(out), "reachable from other hosts") {
		t.Fatalf("serve --admin 0.0.0.0:0 without credentials: %v\n%s", err, out)
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
	serverCA, clientCA, otherCA := newTestCA(t, "server CA"), newTestCA(t, "client CA"), newTestCA(t, "other CA")
	cert, key := serverCA.issue(t, "goldcard")
	d := startDaemon(t, "--admin", "0.0.0.0:0", "--admin-tls-cert", cert, "--admin-tls-key", key,
		"--admin-client-ca", clientCA.file(t), "--admin-open", "/healthz")
	_, port, _ := net.SplitHostPort(d.admin)
	base := "https://127.0.0.1:" + port
	client := func(ca *testCA) *http.Client {
		roots := x509.NewCertPool()
		roots.AddCert(serverCA.cert)
		c := &tls.Config{RootCAs: roots}
		if ca != nil {
			cf, kf := ca.issue(t, "operator")
			pair, err := tls.LoadX509KeyPair(cf, kf)
			if err != nil {
				t.Fatal(err)
			}
			// Sent even when the server asks for another CA's.
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: c}, Timeout: 5 * time.Second}
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
	cf, kf := clientCA.issue(t, "cli")
	cmd := exec.Command(switchBinary(t), "card", "show", "--pan", "6228480000000952", "--admin", base)
	cmd.Env = append(os.Environ(), "GOLDCARD_ADMIN_CA="+serverCA.file(t), "GOLDCARD_ADMIN_CERT="+cf, "GOLDCARD_ADMIN_KEY="+kf)
	out, err := cmd.CombinedOutput()
	if !strings.Contains(string(out), "no card") && !strings.Contains(string(out), "not found") {
		t.Errorf("goldcard card show over mTLS: %v\n%s", err, out)
	}
}
