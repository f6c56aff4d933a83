package link

import (
	"bytes"
	"crypto/tls"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/switch/internal/switchtest/pki"
)

// TestListenerTLSReload: the files are read again when they change, at
// most every checkEvery; a broken version is reported once and the
// certificate in use is kept.
func TestListenerTLSReload(t *testing.T) {
	dir := t.TempDir()
	ca1, ca2 := pki.NewCA(t, dir, "one"), pki.NewCA(t, dir, "two")
	banksCA := pki.NewCA(t, dir, "banks")
	cert := ca1.Issue("switch", "goldcard")
	next := ca2.Issue("next", "goldcard")
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	tc := config.TLS{CertFile: cert.CertFile, KeyFile: cert.KeyFile, ClientCAFile: banksCA.File, MinVersion: "1.3"}
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
	pki.CopyFile(t, next.KeyFile, cert.KeyFile)
	pki.CopyFile(t, next.CertFile, cert.CertFile)
	if got := issuer(); got != "one" {
		t.Fatalf("reloaded within checkEvery: issuer %s", got)
	}
	lt.checkEvery = 0
	if got := issuer(); got != "two" {
		t.Fatalf("not reloaded: issuer %s", got)
	}

	pki.WriteFileAtomic(t, cert.CertFile, []byte("garbage"))
	for range 3 {
		if got := issuer(); got != "two" {
			t.Fatalf("a broken file was taken on: issuer %s", got)
		}
	}
	pki.CopyFile(t, next.CertFile, cert.CertFile)
	pki.WriteFileAtomic(t, banksCA.File, []byte("garbage"))
	_ = issuer()
	if n := strings.Count(logs.String(), "TLS files not reloaded"); n != 2 {
		t.Errorf("%d errors logged for two broken versions:\n%s", n, logs.String())
	}
	pki.CopyFile(t, filepath.Join(dir, "two-ca.pem"), banksCA.File)
	if got := issuer(); got != "two" || !strings.Contains(logs.String(), "TLS files reloaded") {
		t.Errorf("not reloaded after the repair: issuer %s\n%s", got, logs.String())
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Error("the key was logged")
	}

	for name, bad := range map[string]config.TLS{
		"missing key":      {CertFile: cert.CertFile, KeyFile: filepath.Join(dir, "none.pem")},
		"key of another":   {CertFile: cert.CertFile, KeyFile: ca1.Issue("other", "x").KeyFile},
		"CA without certs": {CertFile: cert.CertFile, KeyFile: cert.KeyFile, ClientCAFile: cert.KeyFile},
	} {
		if _, err := newListenerTLS(bad, nil, log); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

func TestCertBound(t *testing.T) {
	dir := t.TempDir()
	ca := pki.NewCA(t, dir, "banks")
	gw := ca.Issue("gw", "acme-gw")
	leaf := pki.ClientConfig(t, ca, &gw).Certificates[0].Leaf
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
		{"pin", &config.TLS{ClientSPKISHA256: []string{gw.SPKI}}, true, true},
		{"pin in capitals", &config.TLS{ClientSPKISHA256: []string{strings.ToUpper(gw.SPKI)}}, true, true},
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
