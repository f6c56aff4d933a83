package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"

	connection "github.com/moov-io/iso8583-connection"
	"github.com/spf13/cobra"
)

// TLS is how a tool reaches a bank listener over TLS: the CA that issued
// the switch's certificate (default: the system's), the bank's own
// certificate and key for mutual TLS, and the name the switch's
// certificate must carry (default: the host dialled). None set: plain TCP.
type TLS struct {
	ca, cert, key, serverName string
}

// AddFlags adds the --tls-* flags to c.
func (t *TLS) AddFlags(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&t.ca, "tls-ca", "", "connect over TLS, trusting the CA certificates in this PEM file (default: the system's)")
	fl.StringVar(&t.cert, "tls-cert", "", "connect over TLS with this client certificate (PEM), for mutual TLS")
	fl.StringVar(&t.key, "tls-key", "", "the key of --tls-cert (PEM)")
	fl.StringVar(&t.serverName, "tls-server-name", "", "connect over TLS, expecting this name in the switch's certificate (default: the host of the address)")
}

// Config is the TLS client config, or nil for plain TCP.
func (t TLS) Config() (*tls.Config, error) {
	if t.ca == "" && t.cert == "" && t.key == "" && t.serverName == "" {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.serverName}
	if t.ca != "" {
		pem, err := os.ReadFile(t.ca)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca: no PEM certificates in %s", t.ca)
		}
	}
	if (t.cert == "") != (t.key == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if t.cert != "" {
		cert, err := tls.LoadX509KeyPair(t.cert, t.key)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert and --tls-key: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// WithTLS is DialBank's option to connect over TLS with c; nil: plain TCP.
func WithTLS(c *tls.Config) connection.Option {
	return func(o *connection.Options) error {
		o.TLSConfig = c
		return nil
	}
}

// TLSDialer dials over TLS with c, or plain TCP when c is nil, for the
// fixture replayer.
func TLSDialer(c *tls.Config) func(ctx context.Context, addr string) (net.Conn, error) {
	if c == nil {
		return nil
	}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		d := tls.Dialer{Config: c}
		return d.DialContext(ctx, "tcp", addr)
	}
}
