package main

import (
	"log/slog"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/goldcard/goldcard/switch/internal/daemon"
	"github.com/goldcard/goldcard/switch/internal/link"
	"github.com/goldcard/goldcard/switch/internal/metric"
)

var version = daemon.Version()

const (
	linkConnected = metric.LinkConnected
	linkSignedOn  = metric.LinkSignedOn
)

var builtinDialects = link.BuiltinSpecs

func newDialectCache() *link.Dialects { return link.NewDialects() }

var openDatabase = daemon.OpenDatabase

func connectEtcd(f daemon.Options, log *slog.Logger) (*clientv3.Client, func(), error) {
	return daemon.ConnectEtcd(f, log)
}

type cardView struct {
	ID              string `json:"id"`
	PAN             string `json:"pan"`
	Currency        string `json:"currency"`
	Status          string `json:"status"`
	Balance         int64  `json:"balance"`
	Available       int64  `json:"available"`
	Held            int64  `json:"held"`
	FundBalance     int64  `json:"fund_balance"`
	RedeemableToday int64  `json:"redeemable_today"`
	RedeemedToday   int64  `json:"redeemed_today"`
}
