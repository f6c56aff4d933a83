package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/fund"
	"github.com/goldcard/goldcard/iso"
)

// dialectCache builds dialects from their specs once per distinct spec.
type dialectCache struct {
	mu    sync.Mutex              // guards built
	built map[string]*iso.Dialect // by name@digest
}

func newDialectCache() *dialectCache {
	return &dialectCache{built: map[string]*iso.Dialect{}}
}

func specDigest(spec []byte) string {
	sum := sha256.Sum256(spec)
	return hex.EncodeToString(sum[:8])
}

// build returns the dialect name for spec, building it if not yet built.
func (c *dialectCache) build(name string, spec []byte) (*iso.Dialect, error) {
	key := name + "@" + specDigest(spec)
	c.mu.Lock()
	d, ok := c.built[key]
	c.mu.Unlock()
	if ok {
		return d, nil
	}
	d, err := iso.LoadDialect(name, spec)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.built[key] = d
	c.mu.Unlock()
	return d, nil
}

// check is config's dialect check: it builds the spec.
func (c *dialectCache) check(name string, spec []byte) error {
	_, err := c.build(name, spec)
	return err
}

// builtinDialects are the shipped dialects' specs.
func builtinDialects() map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for _, name := range iso.BuiltinNames() {
		if b, err := iso.BuiltinJSON(name); err == nil {
			out[name] = b
		}
	}
	return out
}

// switchableFund is the fund company of the current config: replaced,
// not changed, when the config's fund section changes.
type switchableFund struct {
	cur atomic.Pointer[fundBox]
}

type fundBox struct {
	cfg config.Fund
	p   fund.Provider
}

// newFundProvider builds the fund company a config section names.
func newFundProvider(f config.Fund) (fund.Provider, error) {
	if f.Provider == config.FundGateway {
		return fund.NewGateway(f.URL)
	}
	return fund.NewSimulator(fund.SimOptions{Latency: f.SimulatorLatency.D(), FailRate: f.SimulatorFailRate}), nil
}

// set makes f the fund company unless it already is; it reports a change.
func (s *switchableFund) set(f config.Fund) (bool, error) {
	if cur := s.cur.Load(); cur != nil && reflect.DeepEqual(cur.cfg, f) {
		return false, nil
	}
	p, err := newFundProvider(f)
	if err != nil {
		return false, err
	}
	s.cur.Store(&fundBox{cfg: f, p: p})
	return true, nil
}

func (s *switchableFund) p() fund.Provider { return s.cur.Load().p }

func (s *switchableFund) Redeem(ctx context.Context, o fund.Order) (fund.Status, error) {
	return s.p().Redeem(ctx, o)
}

func (s *switchableFund) RedemptionStatus(ctx context.Context, id string) (fund.Status, error) {
	return s.p().RedemptionStatus(ctx, id)
}

func (s *switchableFund) Subscribe(ctx context.Context, o fund.Order) (fund.Status, error) {
	return s.p().Subscribe(ctx, o)
}

func (s *switchableFund) SubscriptionStatus(ctx context.Context, id string) (fund.Status, error) {
	return s.p().SubscriptionStatus(ctx, id)
}

// applyConfig puts a newly applied snapshot into effect: listeners and
// the fund company. Requests read limits and banks from the store. A
// listener that would not bind is reported, and tried again until it does;
// one refused for its port's holder is reported and not tried again.
func (s *Server) applyConfig(_, cur *config.Snapshot, took time.Duration) error {
	s.metrics.configRevision.Set(float64(cur.Revision))
	s.metrics.configApply.Observe(took.Seconds())
	errs := s.macs.update(cur)
	if err := s.reconcileListeners(cur, false); err != nil {
		errs = append(errs, err)
		if retriable(err) {
			s.retryListeners()
		}
	}
	if changed, err := s.fund.set(cur.Fund); err != nil {
		errs = append(errs, err)
	} else if changed {
		s.log.Info("fund company changed", "provider", cur.Fund.Provider, "url", cur.Fund.URL)
	}
	return errors.Join(errs...)
}

// retriable says whether err (of reconcileListeners) holds a listener
// that may open if tried again.
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

// retryListeners tries the current config's listeners again every few
// seconds until they all bind or are refused, then reports what is left:
// the refusals, or nothing.
func (s *Server) retryListeners() {
	if !s.retrying.CompareAndSwap(false, true) {
		return
	}
	var try func()
	try = func() {
		err := s.reconcileListeners(s.cfg.Load(), true)
		if errors.Is(err, errClosed) {
			s.retrying.Store(false)
			return
		}
		if retriable(err) {
			s.log.Warn("bank listeners still not all open; trying again", "err", err)
			s.warn(err)
			time.AfterFunc(listenerRetry, try)
			return
		}
		s.retrying.Store(false)
		if err != nil {
			s.log.Error("bank listeners open, except those refused for their port's holder", "err", err)
		} else {
			s.log.Info("bank listeners open")
		}
		s.warn(err)
	}
	time.AfterFunc(listenerRetry, try)
}

// warn reports err (nil: no problem) as the running config's problem.
func (s *Server) warn(err error) {
	if s.watcher == nil {
		return
	}
	if err == nil {
		s.watcher.SetWarning("")
		return
	}
	s.watcher.SetWarning(err.Error())
}

// listenerRetry is how often listeners that would not bind are tried.
const listenerRetry = 5 * time.Second
