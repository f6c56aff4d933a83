package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// identity is what a switch works on: its config center (an etcd cluster
// and a key prefix in it) and its database. Switches of one identity post
// to one ledger under one config, so a bank may be spread over them; a
// bank port is never shared with a switch of another identity.
type identity struct {
	// cluster is the etcd cluster's ID, 0 for a switch without a config
	// center (one run inside a test).
	cluster uint64
	prefix  string
	// system is the PostgreSQL cluster's system identifier, which a
	// primary and its replicas share, so a failover keeps it.
	system   uint64
	database string
}

// digest names the identity in sixteen hex digits, short enough for a
// socket name and never showing the database's or the prefix's name.
func (id identity) digest() string {
	sum := sha256.Sum256(fmt.Appendf(nil, "etcd %016x %q\npostgres %d %q\n", id.cluster, id.prefix, id.system, id.database))
	return hex.EncodeToString(sum[:8])
}

// databaseIdentity reads which PostgreSQL cluster and database pool is
// connected to.
func databaseIdentity(ctx context.Context, pool *pgxpool.Pool) (identity, error) {
	var id identity
	var system int64
	err := pool.QueryRow(ctx, `SELECT system_identifier, current_database() FROM pg_control_system()`).Scan(&system, &id.database)
	if err != nil {
		return identity{}, fmt.Errorf("reading the database's system identifier (the switch's role needs EXECUTE on pg_control_system()): %w", err)
	}
	id.system = uint64(system)
	return id, nil
}

// errConfigCenterUnknown is a switch that cannot say which config center
// it belongs to.
var errConfigCenterUnknown = errors.New("the config center did not answer and this switch has not met it before: no bank port can be opened without knowing which switches may share it")

// clusterID asks etcd for its cluster's ID. What it learns is kept in
// cache (a file of the data directory) for endpoints and prefix, so that a
// switch restarted while etcd is down still knows which config center it
// belongs to, as it still knows the config it ran on.
func clusterID(ctx context.Context, cl *clientv3.Client, endpoints, prefix, cache string) (uint64, error) {
	resp, err := cl.MemberList(ctx)
	if err == nil {
		saveClusterID(cache, endpoints, prefix, resp.Header.ClusterId)
		return resp.Header.ClusterId, nil
	}
	if id, ok := cachedClusterID(cache, endpoints, prefix); ok {
		return id, nil
	}
	return 0, fmt.Errorf("%w (etcd: %v)", errConfigCenterUnknown, err)
}

// clusterCache is the file clusterID keeps what it learnt in.
type clusterCache struct {
	Etcd    string `json:"etcd"`
	Prefix  string `json:"prefix"`
	Cluster string `json:"cluster_id"`
}

func saveClusterID(path, endpoints, prefix string, id uint64) {
	b, _ := json.Marshal(clusterCache{Etcd: endpoints, Prefix: prefix, Cluster: strconv.FormatUint(id, 16)})
	tmp := path + ".tmp"
	if os.WriteFile(tmp, b, 0o640) == nil {
		_ = os.Rename(tmp, path)
	}
}

// cachedClusterID is the cluster ID last learnt for the same endpoints
// and prefix: another --etcd is another config center until it answers.
func cachedClusterID(path, endpoints, prefix string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	var c clusterCache
	if json.Unmarshal(b, &c) != nil || c.Etcd != endpoints || c.Prefix != prefix {
		return 0, false
	}
	id, err := strconv.ParseUint(c.Cluster, 16, 64)
	return id, err == nil
}

// clusterCacheFile is where a data directory keeps the config center's
// cluster ID.
func clusterCacheFile(dataDir string) string { return filepath.Join(dataDir, "config-center.json") }

// LocalIdentity is the identity of a switch on pool's database that follows
// no config center (tests run such switches in-process).
func LocalIdentity(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	id, err := databaseIdentity(ctx, pool)
	if err != nil {
		return "", err
	}
	return id.digest(), nil
}
