package link

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/moov-io/iso8583"
	"golang.org/x/sys/unix"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/metric"
)

// listenerKey is what a listener is: its address, its wire format, its
// TLS files and the banks it serves. A change to any of them replaces the
// listener.
type listenerKey struct {
	listen  string
	dialect string // name and spec digest
	header  string
	banks   string // codes, sorted, joined by +
	tls     string // see tlsKey; empty for plain TCP
}

// bankListener accepts connections for the banks sharing one address. It
// binds with SO_REUSEPORT, so other switches of its identity on the host
// (and its own successor) can bind the same port; ann announces it to them
// (see bindBankPort).
type bankListener struct {
	env     *env
	key     listenerKey
	codes   []string
	dialect *iso.Dialect
	header  iso.Header
	ln      net.Listener
	ann     *announcement
	tls     *tls.Config // nil for plain TCP
	log     *slog.Logger
	nextID  atomic.Uint64
	// life ends when the listener shuts down, cutting short the TLS
	// handshakes under way.
	life context.Context
	stop context.CancelFunc

	mu          sync.Mutex // guards links, handshaking and closing
	links       map[*link]struct{}
	handshaking int // connections accepted, still in their TLS handshake
	// handshakesFrom counts them by peer address.
	handshakesFrom map[netip.Addr]int
	closing        bool
	wg             sync.WaitGroup // the accept loop and every link's life
	// accepting is done when the accept loop has returned.
	accepting sync.WaitGroup
}

// listenerKeys groups a snapshot's enabled banks by address.
func listenerKeys(snap *config.Snapshot) map[string]listenerKey {
	byAddr := map[string][]*config.Bank{}
	for _, code := range snap.BankCodes() {
		if b := snap.Banks[code]; b.Enabled {
			byAddr[b.Listen] = append(byAddr[b.Listen], b)
		}
	}
	keys := map[string]listenerKey{}
	for addr, banks := range byAddr {
		codes := make([]string, len(banks))
		for i, b := range banks {
			codes[i] = b.Code
		}
		sort.Strings(codes)
		keys[addr] = listenerKey{listen: addr, dialect: banks[0].Dialect + "@" + specDigest(snap.Dialects[banks[0].Dialect]), header: banks[0].Header, banks: strings.Join(codes, "+"), tls: tlsKey(banks[0].TLS)}
	}
	return keys
}

// reusePort lets several sockets bind one address; bindBankPort decides
// whose.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
	if err != nil {
		return err
	}
	return serr
}

// listenBanks opens a listener; t is its TLS, nil for plain TCP.
func listenBanks(e *env, key listenerKey, d *iso.Dialect, h iso.Header, t *config.TLS) (*bankListener, error) {
	bl := &bankListener{
		env: e, key: key, codes: strings.Split(key.banks, "+"), dialect: d, header: h,
		log:   e.log.With("bank", key.banks),
		links: make(map[*link]struct{}),
	}
	if t != nil {
		lt, err := newListenerTLS(*t, bl.verifyPeer, bl.log)
		if err != nil {
			return nil, fmt.Errorf("banks %s: %w", key.banks, err)
		}
		bl.tls = lt.serverConfig()
	}
	ln, ann, err := bindBankPort(key.listen, e.identity)
	if err != nil {
		return nil, fmt.Errorf("banks %s: %w", key.banks, err)
	}
	bl.ln, bl.ann = ln, ann
	bl.life, bl.stop = context.WithCancel(context.Background())
	e.m.listenerSeries(bl.label(), bl.codes)
	bl.wg.Add(1)
	bl.accepting.Add(1)
	go func() {
		defer bl.accepting.Done()
		bl.accept()
	}()
	return bl, nil
}

// label names the listener's banks in logs and metrics.
func (bl *bankListener) label() string { return bl.key.banks }

func (bl *bankListener) accept() {
	defer bl.wg.Done()
	for {
		nc, err := bl.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return // the queue is empty: shutdown closes the listener
			}
			if !errors.Is(err, net.ErrClosed) {
				bl.log.Error("accept failed; listener stopped", "err", err)
			}
			return
		}
		bl.admit(nc) // quick: the link runs on goroutines of its own
	}
}

// limits are the link limits of the listener's banks in the current
// config: the most permissive of them on a shared port.
type linkLimits struct {
	maxConns, maxInFlight, maxFrame int
	cidrs                           []netip.Prefix // nil: any address
	read                            readLimits
}

func (bl *bankListener) limits() linkLimits {
	snap := bl.env.cfg.Load()
	var lim linkLimits
	open := false
	for _, code := range bl.codes {
		b, ok := snap.Banks[code]
		if !ok {
			continue
		}
		lim.maxConns += b.MaxConnections
		lim.maxInFlight = max(lim.maxInFlight, b.MaxInFlight)
		lim.maxFrame = max(lim.maxFrame, b.MaxFrame)
		if len(b.AllowedCIDRs) == 0 {
			open = true
		}
		for _, c := range b.AllowedCIDRs {
			if p, err := netip.ParsePrefix(c); err == nil {
				lim.cidrs = append(lim.cidrs, p)
			}
		}
	}
	if open {
		lim.cidrs = nil
	}
	lim.read = readLimitsOf(snap, bl.codes)
	if lim.maxInFlight == 0 {
		d := config.NewBank()
		lim.maxInFlight, lim.maxFrame = d.MaxInFlight, d.MaxFrame
	}
	return lim
}

// admit takes a new connection on, or refuses it when the banks' limits
// say so.
func (bl *bankListener) admit(nc net.Conn) {
	m := bl.env.m
	peer := nc.RemoteAddr().String()
	lim := bl.limits()
	if reason := bl.refusal(nc, lim); reason != "" {
		m.connEvents.WithLabelValues(bl.label(), "refused_"+reason).Inc()
		bl.log.Warn("connection refused", "peer", peer, "reason", reason)
		_ = nc.Close()
		return
	}
	id := bl.nextID.Add(1)
	log := bl.log.With("link", id, "peer", peer)
	if bl.tls != nil {
		bl.handshake(nc, lim, log) // on a goroutine of its own
		return
	}
	bl.start(nc, lim, log)
}

// start runs a link on an admitted connection.
func (bl *bankListener) start(nc net.Conn, lim linkLimits, log *slog.Logger) {
	m := bl.env.m
	l, err := newLink(bl, lim, nc, log)
	if err != nil {
		log.Error("link not started", "err", err)
		_ = nc.Close()
		return
	}
	bl.mu.Lock()
	if bl.closing {
		bl.mu.Unlock()
		l.close()
		return
	}
	bl.links[l] = struct{}{}
	bl.mu.Unlock()
	l.setState(metric.LinkConnected)
	m.connEvents.WithLabelValues(bl.label(), "accepted").Inc()
	log.Info("bank connected")
	bl.wg.Add(1)
	go func() {
		defer bl.wg.Done()
		<-l.closed
		bl.mu.Lock()
		delete(bl.links, l)
		bl.mu.Unlock()
		l.setState("")
		log.Info("bank disconnected")
	}()
}

// maxHandshakesPerAddr bounds the TLS handshakes one address may have
// under way, so that peers stalling theirs cannot take every one of a
// bank's connections from one host.
const maxHandshakesPerAddr = 4

func (bl *bankListener) refusal(nc net.Conn, lim linkLimits) string {
	ap, err := netip.ParseAddrPort(nc.RemoteAddr().String())
	if err != nil {
		return "address"
	}
	bl.mu.Lock()
	n, stalling := len(bl.links)+bl.handshaking, bl.handshakesFrom[ap.Addr().Unmap()]
	bl.mu.Unlock()
	if n >= lim.maxConns {
		return "max_connections"
	}
	if bl.tls != nil && stalling >= maxHandshakesPerAddr {
		return "handshakes_per_address"
	}
	if lim.cidrs == nil {
		return ""
	}
	for _, p := range lim.cidrs {
		if p.Contains(ap.Addr().Unmap()) {
			return ""
		}
	}
	return "cidr"
}

// errUnroutable is a message on a shared port whose DE32 no bank claims.
var errUnroutable = refusal{"no bank on this port serves the message's acquirer (DE32)", iso.ErrUnroutable}

// route finds the bank a message is for: the listener's only bank, or on
// a shared port the bank whose acquirers include DE32, else the one that
// claims no acquirers.
func (bl *bankListener) route(snap *config.Snapshot, msg *iso8583.Message) (*config.Bank, error) {
	var banks []*config.Bank
	for _, code := range bl.codes {
		// A listener being replaced (its bank moved to another address)
		// still answers for its bank while its links drain.
		if b, ok := snap.Banks[code]; ok && b.Enabled {
			banks = append(banks, b)
		}
	}
	de32, _ := msg.GetString(32)
	switch len(banks) {
	case 0:
		return nil, refusal{"issuer unavailable: the bank is no longer configured on this port", iso.ErrUnavailable}
	case 1:
		// A bank that names its acquirers gets only those.
		if b := banks[0]; len(b.Acquirers) == 0 || b.Serves(de32) {
			return b, nil
		}
		return nil, errUnroutable
	}
	var catchAll *config.Bank
	for _, b := range banks {
		if b.Serves(de32) {
			return b, nil
		}
		if len(b.Acquirers) == 0 {
			catchAll = b
		}
	}
	if catchAll != nil {
		return catchAll, nil
	}
	return nil, errUnroutable
}

// shutdown stops accepting and drains every link. Connections the kernel
// has queued for this listener are accepted first: closing a listener
// resets its queue (unless net.ipv4.tcp_migrate_req hands it to a sibling
// SO_REUSEPORT listener).
func (bl *bankListener) shutdown(ctx context.Context) {
	if tl, ok := bl.ln.(*net.TCPListener); ok {
		_ = tl.SetDeadline(time.Now().Add(10 * time.Millisecond))
		bl.accepting.Wait()
	}
	_ = bl.ln.Close()
	bl.ann.close() // after the listener: see bindBankPort
	bl.mu.Lock()
	bl.closing = true
	links := make([]*link, 0, len(bl.links))
	for l := range bl.links {
		links = append(links, l)
	}
	bl.mu.Unlock()
	bl.stop()
	var wg sync.WaitGroup
	for _, l := range links {
		wg.Go(func() { l.drain(ctx) })
	}
	wg.Wait()
	bl.wg.Wait()
}
