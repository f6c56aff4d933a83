package config

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Keys in etcd: <prefix>config/<key> holds the config, and
// <prefix>instances/<id> each live instance's report (on a lease).
const (
	configDir   = "config/"
	instanceDir = "instances/"
)

// Seed writes each of kvs (config keys and values) that etcd lacks and
// returns the keys it wrote. Keys already present are left alone.
func Seed(ctx context.Context, cl *clientv3.Client, prefix string, kvs map[string][]byte) ([]string, error) {
	var wrote []string
	for _, key := range sortedKeys(kvs) {
		k := prefix + configDir + key
		resp, err := cl.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
			Then(clientv3.OpPut(k, string(kvs[key]))).Commit()
		if err != nil {
			return wrote, fmt.Errorf("seeding %s: %w", key, err)
		}
		if resp.Succeeded {
			wrote = append(wrote, key)
		}
	}
	return wrote, nil
}

// Read returns the config keys under prefix and their values, with the
// revision they were read at.
func Read(ctx context.Context, cl *clientv3.Client, prefix string) (map[string][]byte, int64, error) {
	resp, err := cl.Get(ctx, prefix+configDir, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	kvs := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		kvs[strings.TrimPrefix(string(kv.Key), prefix+configDir)] = kv.Value
	}
	return kvs, resp.Header.Revision, nil
}

// Load reads the config under prefix and builds and validates its
// snapshot.
func Load(ctx context.Context, cl *clientv3.Client, prefix string, builtin map[string]json.RawMessage, buildDialect func(string, []byte) error) (*Snapshot, error) {
	kvs, rev, err := Read(ctx, cl, prefix)
	if err != nil {
		return nil, err
	}
	snap, err := Build(rev, kvs, builtin)
	if err == nil {
		err = snap.Validate(buildDialect)
	}
	return snap, err
}

// Report is what an instance publishes about itself.
type Report struct {
	ID        string    `json:"id"`
	Revision  int64     `json:"revision"`   // config revision applied
	AppliedAt time.Time `json:"applied_at"` // when it was applied
	// Rejected is the newest revision refused, with the reason, while
	// the instance keeps running on Revision.
	Rejected  int64     `json:"rejected,omitempty"`
	Error     string    `json:"error,omitempty"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Version   string    `json:"version,omitempty"`
	StartedAt time.Time `json:"started_at"`
}

// Instances lists the live instances' reports.
func Instances(ctx context.Context, cl *clientv3.Client, prefix string) ([]Report, int64, error) {
	resp, err := cl.Get(ctx, prefix+instanceDir, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	var out []Report
	for _, kv := range resp.Kvs {
		var r Report
		if json.Unmarshal(kv.Value, &r) == nil {
			out = append(out, r)
		}
	}
	return out, resp.Header.Revision, nil
}

// InstanceKey is where instance id reports.
func InstanceKey(prefix, id string) string { return prefix + instanceDir + id }

// ConfigKey is where config key lives.
func ConfigKey(prefix, key string) string { return prefix + configDir + key }

// Watcher keeps a Store in step with the config in etcd: it loads it,
// then applies every change, and reports what it applied.
type Watcher struct {
	Client *clientv3.Client
	Prefix string
	Store  *Store
	// Builtin are the shipped dialects, which etcd may add to.
	Builtin map[string]json.RawMessage
	// BuildDialect checks that a dialect's spec builds.
	BuildDialect func(name string, spec []byte) error
	// ID names this instance under instances/.
	ID      string
	Version string
	Log     *slog.Logger
	// Applied is called after a snapshot replaced old, with the time the
	// change took from its arrival; Rejected when a change was refused.
	Applied  func(old, cur *Snapshot, took time.Duration)
	Rejected func(rev int64, err error)

	mu     sync.Mutex // guards report and the lease
	report Report
	lease  clientv3.LeaseID
	kvs    map[string][]byte // config as last read, bad values included
}

// Status returns what the instance last reported.
func (w *Watcher) Status() Report {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.report
}

// Run loads the config and follows it until ctx ends, reloading after a
// compaction, an etcd restart or a lost leader.
func (w *Watcher) Run(ctx context.Context) {
	host, _ := os.Hostname()
	w.mu.Lock()
	w.report = Report{ID: w.ID, Host: host, PID: os.Getpid(), Version: w.Version, StartedAt: time.Now().UTC()}
	if cur := w.Store.Load(); cur != nil {
		w.report.Revision = cur.Revision
	}
	w.mu.Unlock()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := w.follow(ctx)
		if ctx.Err() != nil {
			break
		}
		w.Log.Warn("config watch interrupted; reloading", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	rctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if w.lease != 0 {
		_, _ = w.Client.Revoke(rctx, w.lease)
	}
}

// follow reads the whole config, applies it, then applies each change as
// it is watched, until the watch ends.
func (w *Watcher) follow(ctx context.Context) error {
	kvs, rev, err := Read(ctx, w.Client, w.Prefix)
	if err != nil {
		return err
	}
	w.kvs = kvs
	w.apply(ctx, rev, time.Now())
	if err := w.publish(ctx, w.Status()); err != nil {
		w.Log.Warn("publishing this instance's config status", "err", err)
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := w.Client.Watch(wctx, w.Prefix+configDir, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for resp := range wch {
		arrived := time.Now()
		if resp.CompactRevision != 0 {
			return fmt.Errorf("watch compacted at revision %d", resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			return err
		}
		for _, ev := range resp.Events {
			key := strings.TrimPrefix(string(ev.Kv.Key), w.Prefix+configDir)
			if ev.Type == clientv3.EventTypeDelete {
				delete(w.kvs, key)
			} else {
				w.kvs[key] = ev.Kv.Value
			}
		}
		if len(resp.Events) > 0 {
			w.apply(ctx, resp.Header.Revision, arrived)
		}
	}
	return errors.New("watch closed")
}

// apply builds and validates the snapshot of w.kvs at rev and swaps it in,
// or keeps the current one and reports why not.
func (w *Watcher) apply(ctx context.Context, rev int64, arrived time.Time) {
	old := w.Store.Load()
	if old != nil && old.Revision >= rev {
		return
	}
	snap, err := Build(rev, w.kvs, w.Builtin)
	if err == nil {
		err = snap.Validate(w.BuildDialect)
	}
	w.mu.Lock()
	if err != nil {
		w.report.Rejected, w.report.Error = rev, err.Error()
	} else {
		w.Store.Swap(snap)
		w.report.Revision, w.report.AppliedAt = rev, time.Now().UTC()
		w.report.Rejected, w.report.Error = 0, ""
	}
	report := w.report
	w.mu.Unlock()
	took := time.Since(arrived)
	if err != nil {
		w.Log.Error("config change rejected: keeping the running config", "revision", rev, "running", report.Revision, "err", err)
		if w.Rejected != nil {
			w.Rejected(rev, err)
		}
	} else {
		w.Log.Info("config applied", "revision", rev, "took", took)
		if w.Applied != nil {
			w.Applied(old, snap, took)
		}
	}
	if err := w.publish(ctx, report); err != nil {
		w.Log.Warn("publishing this instance's config status", "err", err)
	}
}

// publish writes the report under instances/<id> on a lease of its own.
func (w *Watcher) publish(ctx context.Context, r Report) error {
	b, _ := json.Marshal(r)
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	w.mu.Lock()
	lease := w.lease
	w.mu.Unlock()
	if lease == 0 {
		g, err := w.Client.Grant(pctx, 10)
		if err != nil {
			return err
		}
		ka, err := w.Client.KeepAlive(ctx, g.ID)
		if err != nil {
			return err
		}
		lease = g.ID
		w.mu.Lock()
		w.lease = lease
		w.mu.Unlock()
		go func() {
			for range ka {
			}
			// The lease is gone (etcd lost it, or we stopped): the next
			// report makes a new one.
			w.mu.Lock()
			if w.lease == lease {
				w.lease = 0
			}
			w.mu.Unlock()
		}()
	}
	_, err := w.Client.Put(pctx, InstanceKey(w.Prefix, w.ID), string(b), clientv3.WithLease(lease))
	if err != nil {
		w.mu.Lock()
		if w.lease == lease {
			w.lease = 0
		}
		w.mu.Unlock()
	}
	return err
}
