package config_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/locks/etcdtest"
)

const prefix = "/goldcard/"

func client(t *testing.T, endpoints ...string) *clientv3.Client {
	t.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func put(t *testing.T, cl *clientv3.Client, key, value string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cl.Put(ctx, config.ConfigKey(prefix, key), value)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startWatcher runs a Watcher for instance id on cl.
func startWatcher(t *testing.T, cl *clientv3.Client, id string) (*config.Watcher, *atomic.Int32) {
	t.Helper()
	var rejected atomic.Int32
	w := &config.Watcher{
		Client: cl, Prefix: prefix, ID: id, Log: slog.New(slog.DiscardHandler),
		Store:   config.NewStore(nil),
		Builtin: map[string]json.RawMessage{"iso87-ascii": json.RawMessage(`{}`)},
		BuildDialect: func(_ string, spec []byte) error {
			if strings.Contains(string(spec), "broken") {
				return errors.New("does not build")
			}
			return nil
		},
		Rejected: func(int64, error) { rejected.Add(1) },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w, &rejected
}

func TestWatcherAppliesAndRejects(t *testing.T) {
	t.Parallel()
	cl := client(t, etcdtest.New(t, 1).Endpoints()...)
	if wrote, err := config.Seed(context.Background(), cl, prefix, map[string][]byte{"banks/default": []byte(`{"listen":":8583"}`)}); err != nil || len(wrote) != 1 {
		t.Fatalf("seed: %v %v", wrote, err)
	}
	// Seeding again leaves what is there.
	if wrote, _ := config.Seed(context.Background(), cl, prefix, map[string][]byte{"banks/default": []byte(`{"listen":":1"}`)}); len(wrote) != 0 {
		t.Fatalf("seeded over an existing key: %v", wrote)
	}
	w, rejected := startWatcher(t, cl, "i1")
	eventually(t, "the first load", func() bool { s := w.Store.Load(); return s != nil && s.Banks["default"] != nil })

	rev := put(t, cl, "banks/acme", `{"listen":":9001","auth_timeout":"2s"}`)
	eventually(t, "a new bank", func() bool { return w.Store.Load().Revision == rev })
	if b := w.Store.Load().Banks["acme"]; b == nil || b.AuthTimeout.D() != 2*time.Second {
		t.Fatalf("bank acme: %+v", b)
	}

	bad := put(t, cl, "dialects/mine", `{"broken":true}`)
	eventually(t, "the rejection", func() bool { return w.Status().Rejected == bad })
	if w.Store.Load().Revision != rev || rejected.Load() != 1 || w.Status().Error == "" {
		t.Fatalf("after a bad change: revision %d, rejected %d, status %+v", w.Store.Load().Revision, rejected.Load(), w.Status())
	}
	eventually(t, "the rejection to be reported in etcd", func() bool {
		reports, _, err := config.Instances(context.Background(), cl, prefix)
		return err == nil && len(reports) == 1 && reports[0].Rejected == bad && reports[0].Revision == rev
	})

	fixed := put(t, cl, "dialects/mine", `{"fine":true}`)
	eventually(t, "the fix", func() bool { return w.Store.Load().Revision == fixed })
	if _, ok := w.Store.Load().Dialects["mine"]; !ok || w.Status().Error != "" {
		t.Fatalf("after the fix: %+v", w.Status())
	}
}

// TestWatcherSurvivesCompactionAndRestart: the member a watcher talks to
// goes down while the config changes and history is compacted; when it is
// back the watcher reloads and catches up.
func TestWatcherSurvivesCompactionAndRestart(t *testing.T) {
	t.Parallel()
	cluster := etcdtest.New(t, 3)
	eps := cluster.Endpoints()
	watcherClient := client(t, eps[0])
	writer := client(t, eps[1], eps[2])
	put(t, writer, "banks/default", `{"listen":":8583"}`)
	w, _ := startWatcher(t, watcherClient, "i1")
	eventually(t, "the first load", func() bool { s := w.Store.Load(); return s != nil && s.Banks["default"] != nil })

	cluster.Stop(0)
	var last int64
	for i := range 5 {
		last = put(t, writer, "limits", `{"redemption_quota":`+string(rune('1'+i))+`00000}`)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := writer.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	cluster.Start(0)
	eventually(t, "the watcher to catch up", func() bool { return w.Store.Load().Revision >= last })
	if q := w.Store.Load().Limits.RedemptionQuota; q != 500000 {
		t.Fatalf("quota %d after catching up", q)
	}
	// It keeps following.
	rev := put(t, writer, "banks/acme", `{"listen":":9001"}`)
	eventually(t, "a change after the restart", func() bool { return w.Store.Load().Revision >= rev })
}

// TestWriteComparesRemovals: a write made against a revision is refused
// when a key was removed since, though nothing left under the prefix
// changed; and the config's revision counts the removal.
func TestWriteComparesRemovals(t *testing.T) {
	ctx := context.Background()
	cl := client(t, etcdtest.New(t, 1).Endpoints()...)
	const prefix = "/gc/"
	if _, err := config.Write(ctx, cl, prefix, "limits", []byte(`{}`), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Write(ctx, cl, prefix, "sweep", []byte(`{}`), 1<<40); err != nil {
		t.Fatal(err)
	}
	_, rev, err := config.Read(ctx, cl, prefix)
	if err != nil {
		t.Fatal(err)
	}
	removed, err := config.Write(ctx, cl, prefix, "sweep", nil, rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Write(ctx, cl, prefix, "limits", []byte(`{"redemption_quota":1}`), rev); !errors.Is(err, config.ErrChanged) {
		t.Fatalf("a write against revision %d after a removal at %d: %v, want ErrChanged", rev, removed, err)
	}
	if _, now, _ := config.Read(ctx, cl, prefix); now != removed {
		t.Fatalf("config revision %d after a removal at %d", now, removed)
	}
}
