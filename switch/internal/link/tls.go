package link

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
)

// tlsHandshakeTimeout bounds a client's TLS handshake: a client that never
// finishes it loses the connection rather than keep it.
const tlsHandshakeTimeout = 10 * time.Second

// tlsCheckEvery is how often, at most, the certificate files are read
// again to see whether they changed.
const tlsCheckEvery = time.Second

// errNotBound refuses a client certificate, or a message on a link, for a
// bank whose identity binding the certificate does not match.
var errNotBound = refusal{"the link's client certificate is not bound to the bank", iso.ErrUnroutable}

// listenerTLS is a bank listener's TLS. The certificate, key and client CA
// are read from their files on a handshake when tlsCheckEvery has passed
// since the last look, and taken on when their contents changed; files
// that do not load leave the previous ones in use, with one error logged
// per bad version. Links already up are not touched.
type listenerTLS struct {
	cfg        config.TLS
	min        uint16
	verify     func(tls.ConnectionState) error // identity binding, per handshake
	log        *slog.Logger
	checkEvery time.Duration

	mu      sync.Mutex // guards what follows
	checked time.Time
	digest  [32]byte    // of the files' contents last tried
	current *tls.Config // what handshakes use
	failed  string      // the error last logged, until a reload works
}

// tlsMinVersion is min_version as a crypto/tls version.
func tlsMinVersion(v string) uint16 {
	if v == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// tlsKey is what of a bank's TLS makes its listener: changing it replaces
// the listener. Identity bindings are read per handshake and are not part
// of it.
func tlsKey(t *config.TLS) string {
	if t == nil {
		return ""
	}
	min := t.MinVersion
	if min == "" {
		min = "1.2"
	}
	return strings.Join([]string{t.CertFile, t.KeyFile, t.ClientCAFile, min}, "|")
}

// newListenerTLS loads t's files; verify checks each handshake's client
// certificate against the banks' identity bindings.
func newListenerTLS(t config.TLS, verify func(tls.ConnectionState) error, log *slog.Logger) (*listenerTLS, error) {
	lt := &listenerTLS{cfg: t, min: tlsMinVersion(t.MinVersion), verify: verify, log: log, checkEvery: tlsCheckEvery}
	files, digest, err := lt.read()
	if err != nil {
		return nil, err
	}
	c, err := lt.build(files)
	if err != nil {
		return nil, err
	}
	lt.current, lt.digest, lt.checked = c, digest, time.Now()
	return lt, nil
}

// serverConfig is the config to wrap accepted connections with.
func (lt *listenerTLS) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: lt.min,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return lt.config(), nil
		},
	}
}

// tlsFiles are the contents of a listener's certificate files.
type tlsFiles struct{ cert, key, ca []byte }

func (lt *listenerTLS) read() (tlsFiles, [32]byte, error) {
	var f tlsFiles
	var err error
	if f.cert, err = os.ReadFile(lt.cfg.CertFile); err != nil {
		return f, [32]byte{}, fmt.Errorf("reading cert_file: %w", err)
	}
	if f.key, err = os.ReadFile(lt.cfg.KeyFile); err != nil {
		return f, [32]byte{}, fmt.Errorf("reading key_file: %w", err)
	}
	if lt.cfg.ClientCAFile != "" {
		if f.ca, err = os.ReadFile(lt.cfg.ClientCAFile); err != nil {
			return f, [32]byte{}, fmt.Errorf("reading client_ca_file: %w", err)
		}
	}
	h := sha256.New()
	for _, b := range [][]byte{f.cert, f.key, f.ca} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return f, sum, nil
}

// build makes the handshake config from the files' contents. Its errors
// never quote the key.
func (lt *listenerTLS) build(f tlsFiles) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(f.cert, f.key)
	if err != nil {
		return nil, fmt.Errorf("loading cert_file and key_file: %w", err)
	}
	c := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   lt.min,
		// Every link handshakes in full, against the CA of the moment.
		SessionTicketsDisabled: true,
		VerifyConnection:       lt.verify,
	}
	if lt.cfg.ClientCAFile != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(f.ca) {
			return nil, errors.New("loading client_ca_file: no PEM certificates in it")
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// config is the handshake config, read again from the files if they
// changed and tlsCheckEvery has passed since they were last read.
func (lt *listenerTLS) config() *tls.Config {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	now := time.Now()
	if now.Sub(lt.checked) < lt.checkEvery {
		return lt.current
	}
	lt.checked = now
	files, digest, err := lt.read()
	if err == nil && digest == lt.digest {
		return lt.current
	}
	var c *tls.Config
	if err == nil {
		lt.digest = digest // tried once, whatever comes of it
		c, err = lt.build(files)
	}
	if err != nil {
		if msg := err.Error(); msg != lt.failed {
			lt.failed = msg
			lt.log.Error("TLS files not reloaded; keeping the certificate in use", "err", err)
		}
		return lt.current
	}
	lt.failed = ""
	lt.current = c
	if leaf := c.Certificates[0].Leaf; leaf != nil {
		lt.log.Info("TLS files reloaded", "cert_subject", leaf.Subject.CommonName, "cert_not_after", leaf.NotAfter)
	}
	return c
}

// certBound reports whether a link with client certificate leaf (nil for
// none) may speak for bank b: b binds no identity, or leaf carries one of
// its subject names or public key pins.
func certBound(b *config.Bank, leaf *x509.Certificate) bool {
	if b.TLS == nil || (len(b.TLS.ClientSubjects) == 0 && len(b.TLS.ClientSPKISHA256) == 0) {
		return true
	}
	if leaf == nil {
		return false
	}
	if cn := leaf.Subject.CommonName; cn != "" && slices.Contains(b.TLS.ClientSubjects, cn) {
		return true
	}
	sum := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	for _, pin := range b.TLS.ClientSPKISHA256 {
		if p, err := hex.DecodeString(pin); err == nil && bytes.Equal(p, sum[:]) {
			return true
		}
	}
	return false
}

// handshake runs the TLS handshake of an admitted connection on a
// goroutine of its own, within tlsHandshakeTimeout, then starts its link.
// Until then the connection counts against the banks' max_connections.
func (bl *bankListener) handshake(nc net.Conn, lim linkLimits, log *slog.Logger) {
	var addr netip.Addr
	if ap, err := netip.ParseAddrPort(nc.RemoteAddr().String()); err == nil {
		addr = ap.Addr().Unmap()
	}
	bl.mu.Lock()
	bl.handshaking++
	if bl.handshakesFrom == nil {
		bl.handshakesFrom = map[netip.Addr]int{}
	}
	bl.handshakesFrom[addr]++
	bl.mu.Unlock()
	bl.wg.Add(1)
	go func() {
		defer bl.wg.Done()
		defer func() {
			bl.mu.Lock()
			bl.handshaking--
			if bl.handshakesFrom[addr]--; bl.handshakesFrom[addr] <= 0 {
				delete(bl.handshakesFrom, addr)
			}
			bl.mu.Unlock()
		}()
		tc := tls.Server(nc, bl.tls)
		ctx, cancel := context.WithTimeout(bl.life, tlsHandshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			_ = nc.Close()
			if bl.life.Err() != nil {
				return // shutting down
			}
			bl.env.m.connEvents.WithLabelValues(bl.label(), "refused_tls").Inc()
			log.Warn("connection refused: TLS handshake failed", "reason", handshakeReason(err))
			return
		}
		st := tc.ConnectionState()
		if len(st.PeerCertificates) > 0 {
			log = log.With("client_cert", st.PeerCertificates[0].Subject.CommonName)
		}
		bl.start(tc, lim, log)
	}()
}

// handshakeReason says why a handshake failed.
func handshakeReason(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "not completed within " + tlsHandshakeTimeout.String()
	}
	return err.Error()
}

// verifyPeer accepts a client certificate that one of the listener's banks
// may be spoken for with. Each message is checked again against the bank
// it is routed to (link.route).
func (bl *bankListener) verifyPeer(st tls.ConnectionState) error {
	var leaf *x509.Certificate
	if len(st.PeerCertificates) > 0 {
		leaf = st.PeerCertificates[0]
	}
	snap := bl.env.cfg.Load()
	for _, code := range bl.codes {
		if b, ok := snap.Banks[code]; ok && b.Enabled && certBound(b, leaf) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s", errNotBound, bl.label())
}

// route is the listener's route, refused for a bank the link's client
// certificate may not speak for.
func (l *link) route(snap *config.Snapshot, msg *iso8583.Message) (*config.Bank, error) {
	b, err := l.ln.route(snap, msg)
	if err != nil {
		return nil, err
	}
	var leaf *x509.Certificate
	var st tls.ConnectionState
	tc, secured := l.nc.(*tls.Conn)
	if secured {
		if st = tc.ConnectionState(); len(st.PeerCertificates) > 0 {
			leaf = st.PeerCertificates[0]
		}
	}
	// A bank configured for TLS is never served on a plain link, such as
	// one of the listener kept while the TLS one cannot open; nor, with a
	// client CA, on a link without a verified certificate.
	if b.TLS != nil && (!secured || (b.TLS.ClientCAFile != "" && len(st.VerifiedChains) == 0)) {
		return nil, fmt.Errorf("%w: %s requires TLS", errNotBound, b.Code)
	}
	if !certBound(b, leaf) {
		return nil, fmt.Errorf("%w: %s", errNotBound, b.Code)
	}
	return b, nil
}
