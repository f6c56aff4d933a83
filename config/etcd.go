package config

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Keys in etcd: <prefix>config/<key> holds the config, and
// <prefix>instances/<id> each live instance's report (on a lease).
// <prefix>config-changed is written with every change made through
// Write, so that the config's revision (the newest change to it) counts a
// key's removal too.
const (
	configDir   = "config/"
	instanceDir = "instances/"
	changedKey  = "config-changed"
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

// ErrChanged is a write refused because the config changed since it was
// read.
var ErrChanged = errors.New("config: the config changed meanwhile")

// Write puts key (or deletes it, for a nil value) if nothing under the
// config prefix has changed since revision rev, so that a change is only
// ever made to the config it was validated against. It returns the new
// revision, or ErrChanged.
func Write(ctx context.Context, cl *clientv3.Client, prefix, key string, value []byte, rev int64) (int64, error) {
	op := clientv3.OpDelete(ConfigKey(prefix, key))
	if value != nil {
		op = clientv3.OpPut(ConfigKey(prefix, key), string(value))
	}
	resp, err := cl.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(prefix+configDir), "<", rev+1).WithPrefix(),
			// A key removed meanwhile leaves nothing under the prefix to
			// compare, but its removal stamped changedKey.
			clientv3.Compare(clientv3.ModRevision(prefix+changedKey), "<", rev+1)).
		Then(op, clientv3.OpPut(prefix+changedKey, time.Now().UTC().Format(time.RFC3339Nano))).Commit()
	if err != nil {
		return 0, err
	}
	if !resp.Succeeded {
		return 0, ErrChanged
	}
	return resp.Header.Revision, nil
}

// WrapStored wraps the MAC keys the config center holds in the clear (and,
// with rewrap, those wrapped under an earlier KEK) under k's current KEK,
// in one write made only if the config did not change meanwhile. It
// returns the keys rewritten and the revision written (0: none).
func WrapStored(ctx context.Context, cl *clientv3.Client, prefix string, k KEK, rewrap bool) ([]string, int64, error) {
	for {
		kvs, rev, err := Read(ctx, cl, prefix)
		if err != nil {
			return nil, 0, err
		}
		changed, err := WrapKeys(kvs, k, rewrap)
		if err != nil || len(changed) == 0 {
			return nil, 0, err
		}
		ops := []clientv3.Op{clientv3.OpPut(prefix+changedKey, time.Now().UTC().Format(time.RFC3339Nano))}
		for _, key := range changed {
			ops = append(ops, clientv3.OpPut(ConfigKey(prefix, key), string(kvs[key])))
		}
		resp, err := cl.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(prefix+configDir), "<", rev+1).WithPrefix(),
				clientv3.Compare(clientv3.ModRevision(prefix+changedKey), "<", rev+1)).
			Then(ops...).Commit()
		if err != nil {
			return nil, 0, err
		}
		if resp.Succeeded {
			return changed, resp.Header.Revision, nil
		}
	}
}

// Read returns the config keys under prefix and their values, with the
// config's revision: the etcd revision of its newest change. Instances on
// the same config report the same revision, however long they have run.
func Read(ctx context.Context, cl *clientv3.Client, prefix string) (map[string][]byte, int64, error) {
	kvs, rev, _, err := read(ctx, cl, prefix)
	return kvs, rev, err
}

// read is Read, also returning the revision of the store when it was read,
// from which a watch carries on.
func read(ctx context.Context, cl *clientv3.Client, prefix string) (kvs map[string][]byte, rev, at int64, err error) {
	resp, err := cl.Txn(ctx).Then(clientv3.OpGet(prefix+configDir, clientv3.WithPrefix()), clientv3.OpGet(prefix+changedKey)).Commit()
	if err != nil {
		return nil, 0, 0, err
	}
	keys, changed := resp.Responses[0].GetResponseRange(), resp.Responses[1].GetResponseRange()
	kvs = make(map[string][]byte, len(keys.Kvs))
	for _, kv := range keys.Kvs {
		kvs[strings.TrimPrefix(string(kv.Key), prefix+configDir)] = kv.Value
		rev = max(rev, kv.ModRevision)
	}
	for _, kv := range changed.Kvs {
		rev = max(rev, kv.ModRevision)
	}
	return kvs, rev, resp.Header.Revision, nil
}

// Report is what an instance publishes about itself.
type Report struct {
	ID        string    `json:"id"`
	Revision  int64     `json:"revision"`   // config revision applied
	AppliedAt time.Time `json:"applied_at"` // when it was applied
	// Rejected is the newest revision refused, with the reason, while
	// the instance keeps running on Revision.
	Rejected int64  `json:"rejected,omitempty"`
	Error    string `json:"error,omitempty"`
	// Warning is a problem putting Revision into effect.
	Warning   string    `json:"warning,omitempty"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Version   string    `json:"version,omitempty"`
	StartedAt time.Time `json:"started_at"`
	// KEKs are the check values of the key-encryption keys the instance
	// holds, the one it wraps under first: what is wrapped for every
	// switch must be under one they all hold.
	KEKs []string `json:"keks,omitempty"`
}

// Holds reports whether every live instance holds kekID, and names one
// that does not (or does not say: a build before KEKs).
func Holds(live []Report, kekID string) (bool, string) {
	for _, r := range live {
		if len(r.KEKs) == 0 {
			return false, fmt.Sprintf("switch %s does not say which KEKs it holds (a build before them)", r.ID)
		}
		if !slices.Contains(r.KEKs, kekID) {
			return false, fmt.Sprintf("switch %s holds KEK %s, not %s", r.ID, strings.Join(r.KEKs, ", "), kekID)
		}
	}
	return true, ""
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
	// KEK opens the banks' wrapped MAC keys; a change with a key it does
	// not open is refused. KEKs are the check values of every KEK the
	// instance holds, reported with its revision.
	KEK  KEK
	KEKs []string
	// ID names this instance under instances/.
	ID      string
	Version string
	Log     *slog.Logger
	// Applied is called after a snapshot replaced old, with the time the
	// change took from its arrival; a problem it returns (a listener that
	// would not bind) is reported with the applied revision. Rejected is
	// called when a change was refused.
	Applied  func(old, cur *Snapshot, took time.Duration) error
	Rejected func(rev int64, err error)

	mu     sync.Mutex // guards report
	report Report
	kvs    map[string][]byte // config as last read, bad values included
	// reports carries the latest report to the reporter, which owns the
	// instance key's lease.
	reports chan Report
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
	w.report = Report{ID: w.ID, Host: host, PID: os.Getpid(), Version: w.Version, StartedAt: time.Now().UTC(), KEKs: w.KEKs}
	if cur := w.Store.Load(); cur != nil {
		w.report.Revision = cur.Revision
	}
	w.reports = make(chan Report, 1)
	w.mu.Unlock()
	reported := make(chan struct{})
	go func() { defer close(reported); w.reporter(ctx) }()
	defer func() { <-reported }()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		started := time.Now()
		err := w.follow(ctx)
		if ctx.Err() != nil {
			break
		}
		if time.Since(started) > 10*time.Second {
			backoff = 100 * time.Millisecond // it ran well before this interruption
		}
		w.Log.Warn("config watch interrupted; reloading", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// follow reads the whole config, applies it, then applies each change as
// it is watched, until the watch ends.
func (w *Watcher) follow(ctx context.Context) error {
	kvs, rev, at, err := read(ctx, w.Client, w.Prefix)
	if err != nil {
		return err
	}
	// Applied again only if it changed: a key removed without Write
	// leaves the revision as it was.
	changed := w.kvs != nil && !maps.EqualFunc(w.kvs, kvs, bytes.Equal)
	w.kvs = kvs
	w.apply(rev, time.Now(), changed)
	w.publish(w.Status())
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := w.Client.Watch(wctx, w.Prefix+configDir, clientv3.WithPrefix(), clientv3.WithRev(at+1))
	for resp := range wch {
		arrived := time.Now()
		if resp.CompactRevision != 0 {
			return fmt.Errorf("watch compacted at revision %d", resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			return err
		}
		// A response may carry only part of a long catch-up, labelled
		// with the store's newest revision: the snapshot is labelled with
		// the newest change it holds, and every response is applied.
		var rev int64
		for _, ev := range resp.Events {
			key := strings.TrimPrefix(string(ev.Kv.Key), w.Prefix+configDir)
			if ev.Type == clientv3.EventTypeDelete {
				delete(w.kvs, key)
			} else {
				w.kvs[key] = ev.Kv.Value
			}
			rev = max(rev, ev.Kv.ModRevision)
		}
		if len(resp.Events) > 0 {
			w.apply(rev, arrived, true)
		}
	}
	return errors.New("watch closed")
}

// apply builds and validates the snapshot of w.kvs at rev and swaps it in,
// or keeps the current one and reports why not. Unless always, a snapshot
// no newer than the current one is left alone.
func (w *Watcher) apply(rev int64, arrived time.Time, always bool) {
	old := w.Store.Load()
	if !always && old != nil && old.Revision >= rev {
		return
	}
	snap, err := Build(rev, w.kvs, w.Builtin)
	if err == nil {
		err = snap.Validate(w.BuildDialect)
	}
	if err == nil {
		err = snap.OpenKeys(w.KEK)
	}
	var problem error
	if err == nil {
		w.Store.Swap(snap)
		if w.Applied != nil {
			problem = w.Applied(old, snap, time.Since(arrived))
		}
	}
	w.mu.Lock()
	if err != nil {
		w.report.Rejected, w.report.Error = rev, err.Error()
	} else {
		w.report.Revision, w.report.AppliedAt = rev, time.Now().UTC()
		w.report.Rejected, w.report.Error, w.report.Warning = 0, "", ""
		if problem != nil {
			w.report.Warning = problem.Error()
		}
	}
	report := w.report
	w.mu.Unlock()
	switch {
	case err != nil:
		w.Log.Error("config change rejected: keeping the running config", "revision", rev, "running", report.Revision, "err", err)
		if w.Rejected != nil {
			w.Rejected(rev, err)
		}
	case problem != nil:
		w.Log.Error("config applied, with a problem", "revision", rev, "problem", problem)
	default:
		w.Log.Info("config applied", "revision", rev, "took", time.Since(arrived))
	}
	w.publish(report)
}

// SetWarning reports a problem putting the running config into effect
// (or clears it with ""), as Applied's result does.
func (w *Watcher) SetWarning(problem string) {
	w.mu.Lock()
	if w.report.Warning == problem {
		w.mu.Unlock()
		return
	}
	w.report.Warning = problem
	report := w.report
	w.mu.Unlock()
	w.publish(report)
}

// publish hands the latest report to the reporter; an older one still
// waiting is dropped.
func (w *Watcher) publish(r Report) {
	w.mu.Lock()
	ch := w.reports
	w.mu.Unlock()
	if ch == nil {
		return
	}
	for {
		select {
		case ch <- r:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// reporter writes the reports under instances/<id> on a lease of its own,
// for as long as ctx lasts: a lease lost (etcd down longer than its TTL)
// is granted again and the report written again, and at the end the
// lease is revoked, so the instance disappears at once.
func (w *Watcher) reporter(ctx context.Context) {
	const ttl = 10
	var (
		lease   clientv3.LeaseID
		alive   <-chan *clientv3.LeaseKeepAliveResponse
		stopKA  context.CancelFunc = func() {}
		last    Report
		have    bool
		retry   = time.NewTimer(time.Hour)
		pending bool
	)
	defer func() {
		stopKA()
		if lease != 0 {
			rctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, _ = w.Client.Revoke(rctx, lease)
		}
	}()
	drop := func() {
		stopKA()
		lease, alive = 0, nil
	}
	write := func() {
		pending = false
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if lease == 0 {
			g, err := w.Client.Grant(wctx, ttl)
			if err != nil {
				w.Log.Warn("publishing this instance's config status", "err", err)
				pending = true
				retry.Reset(time.Second)
				return
			}
			kctx, cancel := context.WithCancel(ctx)
			ka, err := w.Client.KeepAlive(kctx, g.ID)
			if err != nil {
				cancel()
				pending = true
				retry.Reset(time.Second)
				return
			}
			lease, alive, stopKA = g.ID, ka, cancel
		}
		b, _ := json.Marshal(last)
		if _, err := w.Client.Put(wctx, InstanceKey(w.Prefix, w.ID), string(b), clientv3.WithLease(lease)); err != nil {
			w.Log.Warn("publishing this instance's config status", "err", err)
			drop()
			pending = true
			retry.Reset(time.Second)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-w.reports:
			last, have = r, true
			write()
		case _, ok := <-alive:
			if !ok {
				drop()
				if have {
					write()
				}
			}
		case <-retry.C:
			if pending && have {
				write()
			}
		}
	}
}
