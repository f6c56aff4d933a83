package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/moov-io/iso8583"
	connection "github.com/moov-io/iso8583-connection"
	"github.com/spf13/cobra"

	"github.com/goldcard/goldcard/iso"
)

// dialBank connects to a switch as a bank would, for the load generator
// and the tests: requests are matched to responses by STAN.
func dialBank(ctx context.Context, addr string, d *iso.Dialect, h iso.Header, opts ...connection.Option) (*connection.Connection, error) {
	read := func(r io.Reader) (int, error) {
		b := make([]byte, h.Size())
		if _, err := io.ReadFull(r, b); err != nil {
			return 0, err
		}
		return h.Decode(b)
	}
	write := func(w io.Writer, n int) (int, error) {
		b, err := h.Append(nil, n)
		if err != nil {
			return 0, err
		}
		return w.Write(b)
	}
	opts = append([]connection.Option{connection.SendTimeout(10 * time.Second), connection.ConnectTimeout(5 * time.Second)}, opts...)
	c, err := connection.New(addr, d.Spec, read, write, opts...)
	if err != nil {
		return nil, err
	}
	if err := c.ConnectCtx(ctx); err != nil {
		return nil, fmt.Errorf("connecting to the switch at %s: %w", addr, err)
	}
	return c, nil
}

// newMessage builds a message of dialect d from field values.
func newMessage(d *iso.Dialect, mti string, fields map[int]string) (*iso8583.Message, error) {
	m := d.NewMessage()
	m.MTI(mti)
	for id, v := range fields {
		if err := d.SetField(m, id, v); err != nil {
			return nil, fmt.Errorf("DE%d: %w", id, err)
		}
	}
	return m, nil
}

// clientTLS is how a tool reaches a bank listener over TLS: the CA that
// issued the switch's certificate (default: the system's), the bank's own
// certificate and key for mutual TLS, and the name the switch's
// certificate must carry (default: the host dialled). None set: plain TCP.
type clientTLS struct {
	ca, cert, key, serverName string
}

// addFlags adds the --tls-* flags to c.
func (t *clientTLS) addFlags(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&t.ca, "tls-ca", "", "connect over TLS, trusting the CA certificates in this PEM file (default: the system's)")
	fl.StringVar(&t.cert, "tls-cert", "", "connect over TLS with this client certificate (PEM), for mutual TLS")
	fl.StringVar(&t.key, "tls-key", "", "the key of --tls-cert (PEM)")
	fl.StringVar(&t.serverName, "tls-server-name", "", "connect over TLS, expecting this name in the switch's certificate (default: the host of the address)")
}

// config is the TLS client config, or nil for plain TCP.
func (t clientTLS) config() (*tls.Config, error) {
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

// withTLS is dialBank's option to connect over TLS with c; nil: plain TCP.
func withTLS(c *tls.Config) connection.Option {
	return func(o *connection.Options) error {
		o.TLSConfig = c
		return nil
	}
}

// tlsDialer dials over TLS with c, or plain TCP when c is nil, for the
// fixture replayer.
func tlsDialer(c *tls.Config) func(ctx context.Context, addr string) (net.Conn, error) {
	if c == nil {
		return nil
	}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		d := tls.Dialer{Config: c}
		return d.DialContext(ctx, "tcp", addr)
	}
}
