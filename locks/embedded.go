package locks

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// Member is one member of an embedded etcd cluster.
type Member struct {
	Name      string
	Dir       string
	ClientURL string // where clients connect, http://host:port
	PeerURL   string // where the other members connect
}

// EmbeddedOptions describe an embedded etcd member.
type EmbeddedOptions struct {
	Member
	// Cluster lists every member, this one included; empty means a
	// single-member cluster.
	Cluster []Member
	// LogFile receives etcd's own log (warnings and errors); empty
	// discards it.
	LogFile string
	// StartTimeout bounds the wait for the member to serve (default 60s).
	StartTimeout time.Duration
}

// Embedded is an etcd member running in this process.
type Embedded struct {
	etcd *embed.Etcd
}

// StartEmbedded starts an etcd member and waits until it serves clients.
func StartEmbedded(o EmbeddedOptions) (*Embedded, error) {
	if o.Name == "" {
		o.Name = "goldcard"
	}
	if len(o.Cluster) == 0 {
		o.Cluster = []Member{o.Member}
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = time.Minute
	}
	cfg := embed.NewConfig()
	cfg.Name = o.Name
	cfg.Dir = o.Dir
	curl, err := url.Parse(o.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcd client URL %q: %w", o.ClientURL, err)
	}
	purl, err := url.Parse(o.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcd peer URL %q: %w", o.PeerURL, err)
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*curl}, []url.URL{*curl}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*purl}, []url.URL{*purl}
	var initial []string
	for _, m := range o.Cluster {
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	cfg.InitialCluster = strings.Join(initial, ",")
	cfg.InitialClusterToken = "goldcard"
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{"/dev/null"}
	if o.LogFile != "" {
		cfg.LogOutputs = []string{o.LogFile}
	}
	// Small, fast elections: members run close together.
	cfg.TickMs = 50
	cfg.ElectionMs = 500
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	case <-time.After(o.StartTimeout):
		e.Close()
		return nil, errors.New("embedded etcd did not become ready")
	}
	return &Embedded{etcd: e}, nil
}

// Close stops the member.
func (e *Embedded) Close() { e.etcd.Close() }

// Err reports a member that stopped serving.
func (e *Embedded) Err() <-chan error { return e.etcd.Err() }

// LocalPeerURL returns the peer URL a lone member in dir uses: chosen once
// on a free loopback port and kept in dir, so that members of several
// switches on one host never collide.
func LocalPeerURL(dir string) (string, error) {
	path := filepath.Join(dir, "peer-url")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	port, err := FreePort()
	if err != nil {
		return "", err
	}
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return u, os.WriteFile(path, []byte(u+"\n"), 0o600)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
