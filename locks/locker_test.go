package locks_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/goldcard/goldcard/locks"
	"github.com/goldcard/goldcard/locks/etcdtest"
)

// newLocker probes etcd at the default pace: a probe of a busy machine's
// etcd must not time out and refuse the tests' locks as unavailable.
func newLocker(t *testing.T, c *clientv3.Client, ttl time.Duration) *locks.Locker {
	t.Helper()
	l := locks.New(c, locks.Options{TTL: ttl})
	t.Cleanup(func() { l.Close() })
	return l
}

func TestMutualExclusionAndTokens(t *testing.T) {
	t.Parallel()
	cl := etcdtest.New(t, 1)
	a, b := newLocker(t, cl.Client(), 5*time.Second), newLocker(t, cl.Client(), 5*time.Second)
	ctx := context.Background()

	var inside atomic.Int32
	var last atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Go(func() {
			for range 5 {
				k, err := l.Lock(ctx, "cards/1")
				if err != nil {
					t.Error(err)
					return
				}
				if inside.Add(1) != 1 {
					t.Error("two holders at once")
				}
				if tok := k.Token(); tok <= last.Load() {
					t.Errorf("token %d not above the previous holder's %d", tok, last.Load())
				} else {
					last.Store(tok)
				}
				time.Sleep(time.Millisecond)
				inside.Add(-1)
				if err := k.Unlock(ctx); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
}

func TestLockWaitsNoLongerThanItsContext(t *testing.T) {
	t.Parallel()
	cl := etcdtest.New(t, 1)
	a, b := newLocker(t, cl.Client(), 5*time.Second), newLocker(t, cl.Client(), 5*time.Second)
	k, err := a.Lock(context.Background(), "cards/2")
	if err != nil {
		t.Fatal(err)
	}
	defer k.Unlock(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := b.Lock(ctx, "cards/2"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lock held elsewhere: %v", err)
	}
	// The same process queues in the process, with the same deadline.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if _, err := a.Lock(ctx2, "cards/2"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("lock held in this process: %v", err)
	}
}

// TestCrashedHolder: a holder that vanishes without unlocking blocks the
// key no longer than its lease's TTL, and its lock reports the loss. The
// TTL is etcd's record of the holder's lease; the next holder gets the
// key because that lease ran out.
func TestCrashedHolder(t *testing.T) {
	t.Parallel()
	cl := etcdtest.New(t, 1)
	crashing, err := clientv3.New(clientv3.Config{Endpoints: cl.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	a := locks.New(crashing, locks.Options{TTL: 2 * time.Second, ProbeEvery: 200 * time.Millisecond})
	k, err := a.Lock(context.Background(), "cards/3")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	watcher := cl.Client()
	held, err := watcher.Get(ctx, "/goldcard/locks/cards/3", clientv3.WithPrefix())
	if err != nil || len(held.Kvs) != 1 {
		t.Fatalf("the holder's key: %v %v", held, err)
	}
	lease := clientv3.LeaseID(held.Kvs[0].Lease)
	if ttl, err := watcher.TimeToLive(ctx, lease); err != nil || ttl.GrantedTTL != 2 {
		t.Fatalf("the holder's lease: %+v %v, want a TTL of 2s", ttl, err)
	}
	crashing.Close() // keep-alives stop, as when the process dies
	b := newLocker(t, cl.Client(), 2*time.Second)
	k2, err := b.Lock(ctx, "cards/3") // well before the client's default of 60s
	if err != nil {
		t.Fatal(err)
	}
	if ttl, err := watcher.TimeToLive(ctx, lease); err != nil || ttl.TTL != -1 {
		t.Fatalf("the next holder has the key while the dead holder's lease lives: %+v %v", ttl, err)
	}
	if k2.Token() <= k.Token() {
		t.Fatalf("token %d after a holder with %d", k2.Token(), k.Token())
	}
	select {
	case <-k.Done():
	case <-ctx.Done():
		t.Fatal("the crashed holder's lock never reported its loss")
	}
	_ = k2.Unlock(context.Background())
}

func TestUnavailableFailsFast(t *testing.T) {
	t.Parallel()
	cl := etcdtest.New(t, 1)
	l := newLocker(t, cl.Client(), 2*time.Second)
	if !l.Healthy() {
		t.Fatal("not healthy with etcd up")
	}
	// A lock held in this process while etcd goes: a Lock that waited
	// for anything (etcd, or its turn in the process) would wait for its
	// context.
	held, err := l.Lock(context.Background(), "cards/4")
	if err != nil {
		t.Fatal(err)
	}
	cl.Stop(0)
	eventually(t, "the probe to see etcd down", func() bool { return !l.Healthy() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := l.Lock(ctx, "cards/4"); !errors.Is(err, locks.ErrUnavailable) {
		t.Fatalf("lock with etcd down: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("a lock with etcd down was refused only when its context ended")
	}
	cl.Start(0)
	eventually(t, "the probe to see etcd back", l.Healthy)
	uctx, ucancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ucancel()
	_ = held.Unlock(uctx) // or its session went with etcd; the process's turn is given back either way
	k, err := l.Lock(context.Background(), "cards/4")
	if err != nil {
		t.Fatal(err)
	}
	_ = k.Unlock(context.Background())
}

// eventually polls cond until it holds, for at most 30s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
