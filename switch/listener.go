package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
)

// bankListener accepts one bank's connections.
type bankListener struct {
	srv     *Server
	bank    *config.Bank
	dialect *iso.Dialect
	header  iso.Header
	ln      net.Listener
	log     *slog.Logger
	nextID  atomic.Uint64

	mu      sync.Mutex // guards links and closing
	links   map[*link]struct{}
	closing bool
	wg      sync.WaitGroup // the accept loop and every link's life
}

func listenBank(s *Server, b *config.Bank, d *iso.Dialect, h iso.Header) (*bankListener, error) {
	ln, err := net.Listen("tcp", b.Listen)
	if err != nil {
		return nil, fmt.Errorf("bank %s: %w", b.Code, err)
	}
	bl := &bankListener{
		srv: s, bank: b, dialect: d, header: h, ln: ln,
		log:   s.log.With("bank", b.Code),
		links: make(map[*link]struct{}),
	}
	bl.wg.Add(1)
	go bl.accept()
	return bl, nil
}

func (bl *bankListener) accept() {
	defer bl.wg.Done()
	for {
		nc, err := bl.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				bl.log.Error("accept failed; listener stopped", "err", err)
			}
			return
		}
		bl.admit(nc)
	}
}

// admit takes a new connection on, or refuses it when the bank's limits
// say so.
func (bl *bankListener) admit(nc net.Conn) {
	m := bl.srv.metrics
	peer := nc.RemoteAddr().String()
	if reason := bl.refusal(nc); reason != "" {
		m.connEvents.WithLabelValues(bl.bank.Code, "refused_"+reason).Inc()
		bl.log.Warn("connection refused", "peer", peer, "reason", reason)
		_ = nc.Close()
		return
	}
	id := bl.nextID.Add(1)
	log := bl.log.With("link", id, "peer", peer)
	l, err := newLink(bl.srv, bl.bank, bl.dialect, bl.header, nc, log)
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
	m.connections.WithLabelValues(bl.bank.Code).Inc()
	m.connEvents.WithLabelValues(bl.bank.Code, "accepted").Inc()
	log.Info("bank connected")
	bl.wg.Add(1)
	go func() {
		defer bl.wg.Done()
		<-l.closed
		bl.mu.Lock()
		delete(bl.links, l)
		bl.mu.Unlock()
		m.connections.WithLabelValues(bl.bank.Code).Dec()
		log.Info("bank disconnected")
	}()
}

func (bl *bankListener) refusal(nc net.Conn) string {
	bl.mu.Lock()
	n := len(bl.links)
	bl.mu.Unlock()
	if n >= bl.bank.MaxConnections {
		return "max_connections"
	}
	if len(bl.bank.AllowedCIDRs) == 0 {
		return ""
	}
	ap, err := netip.ParseAddrPort(nc.RemoteAddr().String())
	if err != nil {
		return "address"
	}
	for _, c := range bl.bank.AllowedCIDRs {
		if p, err := netip.ParsePrefix(c); err == nil && p.Contains(ap.Addr().Unmap()) {
			return ""
		}
	}
	return "cidr"
}

// shutdown stops accepting and drains every link.
func (bl *bankListener) shutdown(ctx context.Context) {
	_ = bl.ln.Close()
	bl.mu.Lock()
	bl.closing = true
	links := make([]*link, 0, len(bl.links))
	for l := range bl.links {
		links = append(links, l)
	}
	bl.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range links {
		wg.Go(func() { l.drain(ctx) })
	}
	wg.Wait()
	bl.wg.Wait()
}
