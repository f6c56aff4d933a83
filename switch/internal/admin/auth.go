package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Auth says who may use the admin API.
//
// Without a token and client CA the API is open, which the switch allows
// only on a loopback address. With either, every request needs a bearer
// token (compared in constant time) or a client certificate issued by the
// client CA, except GET and HEAD of the Open paths (such as /metrics and
// /healthz for a scraper). Writes always need them.
type Auth struct {
	Token string
	// OperatorsFile names operators and their tokens, one a line as
	// NAME:SHA256 (the token's SHA-256 in hex): each is a bearer token
	// like Token, and what an operator does is recorded under the name.
	OperatorsFile string
	operators     map[[32]byte]string
	// CertFile and KeyFile serve the API over HTTPS; ClientCAFile
	// accepts clients with a certificate it issued.
	CertFile, KeyFile, ClientCAFile string
	Open                            []string
}

func (a Auth) required() bool { return a.Token != "" || a.ClientCAFile != "" || a.OperatorsFile != "" }

// operatorName is the form of an operator's name.
var operatorName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// LoadOperators reads OperatorsFile, if one is named.
func (a *Auth) LoadOperators() error {
	if a.OperatorsFile == "" {
		return nil
	}
	b, err := os.ReadFile(a.OperatorsFile)
	if err != nil {
		return fmt.Errorf("--admin-operators: %w", err)
	}
	a.operators = map[[32]byte]string{}
	names := map[string]bool{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, sum, _ := strings.Cut(line, ":")
		digest, err := hex.DecodeString(strings.TrimSpace(sum))
		if !operatorName.MatchString(name) || err != nil || len(digest) != 32 {
			return fmt.Errorf("--admin-operators %s line %d: want NAME:SHA256 (a name of letters, digits and ._@-, the token's SHA-256 in hex)", a.OperatorsFile, i+1)
		}
		if names[name] {
			return fmt.Errorf("--admin-operators %s line %d: operator %s is named twice", a.OperatorsFile, i+1, name)
		}
		if name == sharedToken || strings.HasPrefix(name, "cert:") {
			return fmt.Errorf("--admin-operators %s line %d: %q names the shared token's holders; choose another name", a.OperatorsFile, i+1, name)
		}
		names[name] = true
		if other, ok := a.operators[[32]byte(digest)]; ok {
			return fmt.Errorf("--admin-operators %s line %d: operators %s and %s share a token: each needs their own", a.OperatorsFile, i+1, other, name)
		}
		a.operators[[32]byte(digest)] = name
	}
	if len(a.operators) == 0 {
		return fmt.Errorf("--admin-operators %s names no operator", a.OperatorsFile)
	}
	return nil
}

type operatorKey struct{}

// sharedToken is who the shared --admin-token-file token names: whoever
// holds it.
const sharedToken = "token"

// OperatorHeader names the operator on an admin API without credentials
// (loopback only): there, whoever can reach it is trusted, and says who
// they are.
const OperatorHeader = "Goldcard-Operator"

// operator is who made request r: the operator its token names, "token"
// for the shared token, "cert:" and the subject of its client
// certificate; on an open API, what OperatorHeader says. Empty when
// nobody is named.
func operator(r *http.Request) string {
	if v, ok := r.Context().Value(operatorKey{}).(string); ok {
		return v
	}
	if h := strings.TrimSpace(r.Header.Get(OperatorHeader)); operatorName.MatchString(h) {
		return h
	}
	return ""
}

func withOperator(r *http.Request, name string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), operatorKey{}, name))
}

// tlsConfig is the HTTPS configuration, or nil for plain HTTP.
func (a Auth) tlsConfig() (*tls.Config, error) {
	if a.CertFile == "" && a.KeyFile == "" {
		if a.ClientCAFile != "" {
			return nil, errors.New("--admin-client-ca needs --admin-tls-cert and --admin-tls-key")
		}
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("admin API certificate: %w", err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if a.ClientCAFile != "" {
		pem, err := os.ReadFile(a.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("admin API client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("admin API client CA %s holds no PEM certificate", a.ClientCAFile)
		}
		// Checked when given; whether one is needed is the handler's call,
		// so that token holders and open paths work without one.
		c.ClientCAs, c.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return c, nil
}

// Check refuses what Start would: an open API on addr (resolved as
// net.Listen resolves it) that other hosts reach, or TLS files that do not
// load; so that a switch that is going to refuse does so before it creates
// a database or seeds the config center. Start checks the address it
// bound too.
func (a Auth) Check(addr string) error {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return fmt.Errorf("--admin %s: %w", addr, err)
	}
	if err := a.checkExposure(ta); err != nil {
		return fmt.Errorf("--admin %s: %w", addr, err)
	}
	_, err = a.tlsConfig()
	return err
}

// checkExposure refuses an open admin API on an address other hosts reach.
func (a Auth) checkExposure(addr net.Addr) error {
	if a.required() {
		return nil
	}
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsLoopback() {
		return nil
	}
	return fmt.Errorf("the admin API on %s is reachable from other hosts and would be open to them: "+
		"give it a token (--admin-token-file or $GOLDCARD_ADMIN_TOKEN) or client certificates (--admin-client-ca), "+
		"or bind it to 127.0.0.1", addr)
}

// Why the admin API refused a request: the reason label of
// goldcard_admin_refused_total and of the refusal's log line.
const (
	refusedMissing = "missing" // no bearer token and no client certificate
	refusedWrong   = "wrong"   // a bearer token that is not the one
)

// adminGuard lets through the requests Auth allows.
type adminGuard struct {
	auth    Auth
	digest  [32]byte // of the token
	refused *prometheus.CounterVec
	log     *refusalLog
	next    http.Handler
}

func newAdminGuard(a Auth, refused *prometheus.CounterVec, log *slog.Logger, next http.Handler) http.Handler {
	if !a.required() {
		return next
	}
	return &adminGuard{auth: a, digest: sha256.Sum256([]byte(a.Token)), refused: refused, log: newRefusalLog(log, time.Second), next: next}
}

// ServeHTTP answers a refusal 401 with what was wrong: a client that sent
// no token is misconfigured, one whose token is wrong holds a stale one
// (or is guessing), and the operator fixing it needs to know which.
func (g *adminGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && slices.Contains(g.auth.Open, r.URL.Path) {
		g.next.ServeHTTP(w, r)
		return
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		g.next.ServeHTTP(w, withOperator(r, "cert:"+r.TLS.VerifiedChains[0][0].Subject.CommonName))
		return
	}
	reason := refusedMissing
	answer := "missing bearer token: the admin API needs one (Authorization: Bearer ...) or a client certificate"
	challenge := `Bearer realm="goldcard"`
	if token, ok := bearerToken(r); ok {
		got := sha256.Sum256([]byte(token))
		if g.auth.Token != "" && subtle.ConstantTimeCompare(got[:], g.digest[:]) == 1 {
			g.next.ServeHTTP(w, withOperator(r, sharedToken))
			return
		}
		if name, ok := g.auth.operators[got]; ok {
			g.next.ServeHTTP(w, withOperator(r, name))
			return
		}
		reason, answer = refusedWrong, "wrong bearer token"
		challenge += `, error="invalid_token"`
	}
	g.refused.WithLabelValues(reason).Inc()
	g.log.refused(r, reason)
	w.Header().Set("WWW-Authenticate", challenge)
	writeError(w, http.StatusUnauthorized, answer)
}

// bearerToken is the token of r's Authorization header, if it has one:
// the scheme is case-insensitive (RFC 9110), and an empty token is none.
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	return token, strings.EqualFold(scheme, "Bearer") && token != ""
}
