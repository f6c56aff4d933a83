package admin

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/goldcard/goldcard/iso"
)

// maxRefusalPeers bounds the peers a refusalLog remembers; past it, those
// it would log again anyway are forgotten.
const maxRefusalPeers = 4096

// refusalLog logs the admin API's refusals, at most one line per peer host
// every so often, so that a client retrying with a stale token, or someone
// trying tokens, cannot flood the log. The refusals it holds back are
// counted in the peer's next line; every refusal is in
// goldcard_admin_refused_total whether logged or not.
type refusalLog struct {
	log   *slog.Logger
	every time.Duration

	mu    sync.Mutex // guards peers
	peers map[string]*peerRefusals
}

// peerRefusals is what a refusalLog remembers of one peer host.
type peerRefusals struct {
	logged     time.Time // when its last line was written
	suppressed int       // refusals since then, not logged
}

func newRefusalLog(log *slog.Logger, every time.Duration) *refusalLog {
	return &refusalLog{log: log, every: every, peers: make(map[string]*peerRefusals)}
}

// refused logs r's refusal for reason unless its peer had a line less than
// every ago. The line names the peer, the method and the path, with
// anything shaped like a PAN masked; never a header, so never the token.
func (l *refusalLog) refused(r *http.Request, reason string) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	now := time.Now()
	l.mu.Lock()
	p := l.peers[host]
	if p == nil {
		if len(l.peers) >= maxRefusalPeers {
			l.forget(now)
		}
		p = &peerRefusals{}
		l.peers[host] = p
	}
	if !p.logged.IsZero() && now.Sub(p.logged) < l.every {
		p.suppressed++
		l.mu.Unlock()
		return
	}
	suppressed := p.suppressed
	p.logged, p.suppressed = now, 0
	l.mu.Unlock()

	attrs := []any{"peer", host, "method", iso.MaskPANs(r.Method), "path", iso.MaskPANs(r.URL.Path), "reason", reason}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	l.log.Warn("admin API request refused", attrs...)
}

// forget drops the peers whose last line is old enough for their next
// refusal to be logged anyway. What they held back is lost to the log
// (not to the metric). Called with mu held.
func (l *refusalLog) forget(now time.Time) {
	for host, p := range l.peers {
		if now.Sub(p.logged) >= l.every {
			delete(l.peers, host)
		}
	}
}
