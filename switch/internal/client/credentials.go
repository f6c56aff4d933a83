package client

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
)

// ReadToken reads the admin token from file, or else from $env; "" when
// neither is given.
func ReadToken(file, env string) (string, error) {
	if file == "" {
		return strings.TrimSpace(os.Getenv(env)), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%s is empty", file)
	}
	return t, nil
}

// EnvCredentials are the admin API credentials of the environment, read
// once. Admin API clients (goldcard card, replay, top, bench) take them
// from $GOLDCARD_ADMIN_TOKEN (or a file named by
// $GOLDCARD_ADMIN_TOKEN_FILE), and for HTTPS $GOLDCARD_ADMIN_CA and, for
// client certificates, $GOLDCARD_ADMIN_CERT and $GOLDCARD_ADMIN_KEY.
func EnvCredentials() (*Credentials, error) { return envCredentials() }

var envCredentials = sync.OnceValues(func() (*Credentials, error) {
	token, err := ReadToken(os.Getenv("GOLDCARD_ADMIN_TOKEN_FILE"), "GOLDCARD_ADMIN_TOKEN")
	if err != nil {
		return nil, fmt.Errorf("$GOLDCARD_ADMIN_TOKEN_FILE: %w", err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca := os.Getenv("GOLDCARD_ADMIN_CA"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("$GOLDCARD_ADMIN_CA: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("$GOLDCARD_ADMIN_CA %s holds no PEM certificate", ca)
		}
	}
	if cf, kf := os.Getenv("GOLDCARD_ADMIN_CERT"), os.Getenv("GOLDCARD_ADMIN_KEY"); cf != "" || kf != "" {
		cert, err := tls.LoadX509KeyPair(cf, kf)
		if err != nil {
			return nil, fmt.Errorf("$GOLDCARD_ADMIN_CERT and $GOLDCARD_ADMIN_KEY: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = c
	return &Credentials{token: token, transport: tr}, nil
})

// Credentials are a bearer token and the HTTPS transport (trusted CA,
// client certificate) an admin API client presents.
type Credentials struct {
	token     string
	transport http.RoundTripper
}

// Do sends an admin API request with c, through hc, whose Transport
// (when nil) becomes c's.
func (c *Credentials) Do(hc *http.Client, req *http.Request) (*http.Response, error) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if op := os.Getenv("GOLDCARD_OPERATOR"); op != "" {
		// Who is at the keyboard, for an admin API without credentials
		// (loopback); one with them takes the name from the token.
		req.Header.Set("Goldcard-Operator", op)
	}
	h := *hc
	if h.Transport == nil {
		h.Transport = c.transport
	}
	return h.Do(req)
}
