package daemon

import (
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/fund"
)

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

// apply puts a newly applied snapshot into effect: the links (MAC keys,
// listeners) and the fund company. Requests read limits and banks from
// the store.
func (s *Switch) apply(_, cur *config.Snapshot, took time.Duration) error {
	s.m.configRevision.Set(float64(cur.Revision))
	s.m.configApply.Observe(took.Seconds())
	s.issuer.Banks(cur)
	var errs []error
	if err := s.links.Apply(cur); err != nil {
		errs = append(errs, err)
	}
	if err := s.useDataKey(cur); err != nil {
		errs = append(errs, err)
	}
	if changed, err := s.fund.set(cur.Fund); err != nil {
		errs = append(errs, err)
	} else if changed {
		s.log.Info("fund company changed", "provider", cur.Fund.Provider, "url", cur.Fund.URL)
	}
	return errors.Join(errs...)
}

// warn reports a problem of the running config ("" for none) to the
// config center.
func (s *Switch) warn(problem string) {
	if s.watcher != nil {
		s.watcher.SetWarning(problem)
	}
}
