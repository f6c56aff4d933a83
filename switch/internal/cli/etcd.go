package cli

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/goldcard/goldcard/locks"
)

// Etcd is where a command that takes part in the cluster (serve, bench
// timer) finds etcd: the cluster at Endpoints (--etcd, URLs separated by
// commas) or, when that is empty, an etcd it embeds in DataDir/etcd
// serving clients on Listen (--etcd-listen).
type Etcd struct {
	Endpoints, Listen, DataDir string
}

// ConnectEtcd returns a client of the cluster e names, starting the
// embedded etcd first if it names none, and a func that closes both.
func ConnectEtcd(e Etcd, log *slog.Logger) (*clientv3.Client, func(), error) {
	endpoints := strings.Split(e.Endpoints, ",")
	var embedded *locks.Embedded
	if e.Endpoints == "" {
		dir := filepath.Join(e.DataDir, "etcd")
		peer, err := locks.LocalPeerURL(dir)
		if err != nil {
			return nil, nil, fmt.Errorf("embedded etcd: %w", err)
		}
		client := "http://" + e.Listen
		embedded, err = locks.StartEmbedded(locks.EmbeddedOptions{
			Member:  locks.Member{Name: "goldcard", Dir: dir, ClientURL: client, PeerURL: peer},
			LogFile: filepath.Join(e.DataDir, "etcd.log"),
		})
		if err != nil {
			return nil, nil, fmt.Errorf("%w (is another switch using --etcd-listen %s or --data-dir %s?)", err, e.Listen, e.DataDir)
		}
		log.Info("embedded etcd serving", "addr", e.Listen, "dir", dir)
		endpoints = []string{client}
	}
	cl, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second,
	})
	if err != nil {
		if embedded != nil {
			embedded.Close()
		}
		return nil, nil, fmt.Errorf("etcd client: %w", err)
	}
	return cl, func() {
		cl.Close()
		if embedded != nil {
			embedded.Close()
		}
	}, nil
}
