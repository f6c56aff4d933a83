package replay

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/cli"
	"github.com/goldcard/goldcard/switch/internal/client"
)

// bankConfig reads one bank's configuration from a switch.
func bankConfig(ctx context.Context, admin, code string) (*config.Bank, error) {
	raw, status, err := client.Admin(ctx, admin, http.MethodGet, "/v1/config", nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, client.AdminFailure(raw, status)
	}
	var cfg struct {
		Banks map[string]*config.Bank `json:"banks"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("reading the switch's configuration: %w", err)
	}
	b, ok := cfg.Banks[code]
	if !ok {
		codes := make([]string, 0, len(cfg.Banks))
		for c := range cfg.Banks {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		return nil, cli.UsageError{Err: fmt.Errorf("--bank %s: the switch has no such bank (it has %s)", code, strings.Join(codes, ", "))}
	}
	return b, nil
}

// bankAddr is where to reach a listener configured as listen: an
// unspecified host means the admin API's host.
func bankAddr(listen, admin string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if !strings.Contains(admin, "://") {
			admin = "http://" + admin
		}
		if u, err := url.Parse(admin); err == nil && u.Hostname() != "" {
			host = u.Hostname()
		}
	}
	return net.JoinHostPort(host, port)
}

// remoteDialects finds dialects: the shipped ones, then those in the
// switch's configuration.
type remoteDialects struct {
	ctx   context.Context
	admin string
	bank  *config.Bank
	got   map[string]*iso.Dialect
}

func (r *remoteDialects) find(name string) (*iso.Dialect, error) {
	if d, err := iso.Builtin(name); err == nil {
		return d, nil
	}
	if d, ok := r.got[name]; ok {
		return d, nil
	}
	raw, status, err := client.Admin(r.ctx, r.admin, http.MethodGet, "/v1/config/dialects/"+url.PathEscape(name), nil)
	if err != nil {
		return nil, fmt.Errorf("dialect %s is not shipped, and the switch could not be asked for it: %w", name, err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("dialect %s: %w", name, client.AdminFailure(raw, status))
	}
	d, err := iso.LoadDialect(name, raw)
	if err != nil {
		return nil, err
	}
	r.got[name] = d
	return d, nil
}
