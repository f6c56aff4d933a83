package link

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/fixture"
	"github.com/goldcard/goldcard/switch/internal/metric"
)

// Options are what a switch's Listeners are made of.
type Options struct {
	// Config gives each message the snapshot it is handled under.
	Config *config.Store
	// Dialects builds the banks' wire formats (shared with the config
	// check, so that each spec is built once).
	Dialects *Dialects
	// Identity is the digest of the config center and the database the
	// switch works on: a bank port served by a switch of another
	// identity, or by a program that is not a switch, is refused.
	// Required: without it no listener opens.
	Identity string
	// Base parents every request's context. It outlives shutdown:
	// requests in flight are allowed to finish.
	Base context.Context
	// Capture, when set, records every link opened.
	Capture *fixture.Capture
	// Warn reports what keeps the config from being fully in effect (a
	// listener that will not open), "" once nothing does; nil: nowhere.
	Warn func(problem string)
	// Now is the clock for MAC key validity; time.Now when nil.
	Now        func() time.Time
	Log        *slog.Logger
	Registerer prometheus.Registerer
}

// env is what every listener and link of a switch share.
type env struct {
	cfg      *config.Store
	h        handler
	m        *metrics
	macs     *macKeys
	base     context.Context
	capture  *fixture.Capture
	identity string
	log      *slog.Logger
}

// Listeners are a switch's bank listeners: one per address its config's
// enabled banks use, each with its links.
type Listeners struct {
	env      *env
	dialects *Dialects
	warn     func(string)

	mu        sync.Mutex               // guards listeners, refused and closed
	listeners map[string]*bankListener // by address
	// refused are the listeners not opened because another holds their
	// port (see isRefusal), by address; they are not tried again until
	// the config changes.
	refused map[string]refusedListener
	closed  bool
	// retired counts listeners draining after a config change; retrying
	// is set while listeners that would not bind are being tried again.
	retired  sync.WaitGroup
	retrying atomic.Bool
}

// New builds a switch's listeners, handing requests to h. Nothing
// listens until Apply.
func New[R Result](o Options, h Handler[R]) *Listeners {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	base := o.Base
	if base == nil {
		base = context.Background()
	}
	d := o.Dialects
	if d == nil {
		d = NewDialects()
	}
	warn := o.Warn
	if warn == nil {
		warn = func(string) {}
	}
	return &Listeners{
		env: &env{cfg: o.Config, h: anyResult[R]{h}, m: newMetrics(o.Registerer), macs: newMACKeys(now),
			base: base, capture: o.Capture, identity: o.Identity, log: o.Log},
		dialects:  d,
		warn:      warn,
		listeners: make(map[string]*bankListener),
		refused:   make(map[string]refusedListener),
	}
}

// ErrNoIdentity is listeners (or a switch) built without an identity.
var ErrNoIdentity = errors.New("the switch has no identity: it cannot tell which switches may share its bank ports")

// Apply puts a snapshot into effect: the banks' MAC keys, and a listener
// for each address its enabled banks use (see reconcile). A listener that
// would not bind is reported, and tried again until it does; one refused
// for its port's holder is reported and not tried again.
func (s *Listeners) Apply(snap *config.Snapshot) error {
	errs := s.UpdateKeys(snap)
	if err := s.Listen(snap); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// UpdateKeys takes the snapshot's MAC keys on; a bank's key that is not
// usable is reported, and its requests are refused A0.
func (s *Listeners) UpdateKeys(snap *config.Snapshot) []error { return s.env.macs.update(snap) }

// Listen opens and retires listeners for the snapshot (see reconcile).
func (s *Listeners) Listen(snap *config.Snapshot) error {
	if s.env.identity == "" {
		return ErrNoIdentity
	}
	err := s.reconcile(snap, false)
	if err != nil && retriable(err) {
		s.retry()
	}
	return err
}

// refusedListener is a listener refused for its port's holder, and why.
type refusedListener struct {
	key listenerKey
	err error
}

// reconcile opens a listener for each address the snapshot's enabled
// banks use and drains those no longer wanted. A listener whose wire
// format or banks changed is replaced: the new one binds beside the old
// (SO_REUSEPORT) before the old stops accepting and drains. Trying again
// (again set) skips the listeners refused for their port's holder and
// reports their refusals as they were; a new config tries them anew.
//
// A bank moved to an address that does not open is still served where it
// was: its old listener stays until the new one opens.
func (s *Listeners) reconcile(snap *config.Snapshot, again bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if !again {
		clear(s.refused)
	}
	want := listenerKeys(snap)
	var errs []error
	var retired []*bankListener
	unserved := map[string]bool{} // banks whose listener did not open
	for addr, key := range want {
		cur, ok := s.listeners[addr]
		if ok && cur.key == key {
			continue
		}
		if r, ok := s.refused[addr]; ok && r.key == key {
			errs = append(errs, r.err)
			markUnserved(unserved, key)
			continue
		}
		delete(s.refused, addr)
		bl, err := s.open(snap, key)
		if err != nil {
			if isRefusal(err) {
				s.refused[addr] = refusedListener{key: key, err: err}
			}
			errs = append(errs, err)
			markUnserved(unserved, key)
			continue
		}
		if ok {
			retired = append(retired, cur)
		}
		s.listeners[addr] = bl
	}
	for addr := range s.refused {
		if _, ok := want[addr]; !ok {
			delete(s.refused, addr)
		}
	}
	for addr, cur := range s.listeners {
		if _, ok := want[addr]; ok || servesAny(cur, unserved) {
			continue
		}
		retired = append(retired, cur)
		delete(s.listeners, addr)
	}
	for _, bl := range retired {
		s.env.log.Info("bank listener retired: draining its links", "bank", bl.label(), "addr", bl.ln.Addr().String())
		s.retired.Go(func() {
			ctx, cancel := context.WithTimeout(s.env.base, 30*time.Second)
			defer cancel()
			bl.shutdown(ctx)
			s.forgetLinks(bl.label())
		})
	}
	return errors.Join(errs...)
}

func markUnserved(unserved map[string]bool, key listenerKey) {
	for _, code := range strings.Split(key.banks, "+") {
		unserved[code] = true
	}
}

// servesAny says whether bl serves one of banks.
func servesAny(bl *bankListener, banks map[string]bool) bool {
	for _, code := range bl.codes {
		if banks[code] {
			return true
		}
	}
	return false
}

// forgetLinks drops the connection series of a retired listener's banks
// unless a listener still serves them: a bank taken out of the config is
// not a bank whose links are down.
func (s *Listeners) forgetLinks(label string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, bl := range s.listeners {
		if bl.label() == label {
			return
		}
	}
	for _, st := range []string{metric.LinkConnected, metric.LinkSignedOn, metric.LinkDraining} {
		s.env.m.connections.DeleteLabelValues(label, st)
	}
}

func (s *Listeners) open(snap *config.Snapshot, key listenerKey) (*bankListener, error) {
	b := snap.Banks[strings.Split(key.banks, "+")[0]]
	d, err := s.dialects.Build(b.Dialect, snap.Dialects[b.Dialect])
	if err != nil {
		return nil, fmt.Errorf("bank %s: %w", b.Code, err)
	}
	h, err := iso.HeaderByName(b.Header)
	if err != nil {
		return nil, fmt.Errorf("bank %s: %w", b.Code, err)
	}
	bl, err := listenBanks(s.env, key, d, h, b.TLS)
	if err != nil {
		return nil, err
	}
	s.env.log.Info("bank listening", "bank", key.banks, "addr", bl.ln.Addr().String(), "dialect", b.Dialect, "header", h.Name(), "tls", b.TLS != nil)
	return bl, nil
}

// errClosed is a change to listeners that are shutting down.
var errClosed = errors.New("server shutting down")

// retriable says whether err (of reconcile) holds a listener that may
// open if tried again.
//
// A port refused for its holder is not: binding it again would take the
// port as soon as its holder lets go of it for a moment, such as another
// switch stopping to restart, which would then be the one refused; and
// each try at a stranger's port resets the connections the kernel queued
// for the try meanwhile. The refusal stays reported until the config
// changes: putting the bank again tries the port again.
func retriable(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if retriable(e) {
				return true
			}
		}
		return false
	}
	return err != nil && !isRefusal(err)
}

// listenerRetry is how often listeners that would not bind are tried.
const listenerRetry = 5 * time.Second

// retry tries the current config's listeners again every few seconds
// until they all bind or are refused, then reports what is left: the
// refusals, or nothing.
func (s *Listeners) retry() {
	if !s.retrying.CompareAndSwap(false, true) {
		return
	}
	var try func()
	try = func() {
		err := s.reconcile(s.env.cfg.Load(), true)
		if errors.Is(err, errClosed) {
			s.retrying.Store(false)
			return
		}
		if retriable(err) {
			s.env.log.Warn("bank listeners still not all open; trying again", "err", err)
			s.warn(err.Error())
			time.AfterFunc(listenerRetry, try)
			return
		}
		s.retrying.Store(false)
		if err != nil {
			s.env.log.Error("bank listeners open, except those refused for their port's holder", "err", err)
			s.warn(err.Error())
			return
		}
		s.env.log.Info("bank listeners open")
		s.warn("")
	}
	time.AfterFunc(listenerRetry, try)
}

// BankAddr returns the address a bank's listener is bound to, nil when
// it has none.
func (s *Listeners) BankAddr(code string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, bl := range s.listeners {
		for _, c := range bl.codes {
			if c == code {
				return bl.ln.Addr()
			}
		}
	}
	return nil
}

// Shutdown stops accepting and lets requests in flight finish (until ctx
// ends), then closes every link.
func (s *Listeners) Shutdown(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	ls := make([]*bankListener, 0, len(s.listeners))
	for _, bl := range s.listeners {
		ls = append(ls, bl)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, bl := range ls {
		wg.Go(func() { bl.shutdown(ctx) })
	}
	wg.Wait()
	s.retired.Wait()
}
