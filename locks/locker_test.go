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

func newLocker(t *testing.T, c *clientv3.Client, ttl time.Duration) *locks.Locker {
	t.Helper()
	l := locks.New(c, locks.Options{TTL: ttl, ProbeEvery: 200 * time.Millisecond})
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
// key no longer than its lease's TTL, and its lock reports the loss.
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
	crashing.Close() // keep-alives stop, as when the process dies
	b := newLocker(t, cl.Client(), 2*time.Second)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k2, err := b.Lock(ctx, "cards/3")
	if err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited > 4*time.Second {
		t.Fatalf("waited %s for a lock whose holder died, TTL 2s", waited)
	}
	if k2.Token() <= k.Token() {
		t.Fatalf("token %d after a holder with %d", k2.Token(), k.Token())
	}
	select {
	case <-k.Done():
	case <-time.After(5 * time.Second):
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
	cl.Stop(0)
	deadline := time.Now().Add(5 * time.Second)
	for l.Healthy() {
		if time.Now().After(deadline) {
			t.Fatal("still healthy 5s after etcd stopped")
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := l.Lock(ctx, "cards/4"); !errors.Is(err, locks.ErrUnavailable) {
		t.Fatalf("lock with etcd down: %v", err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Fatalf("refusing took %s", d)
	}
	cl.Start(0)
	deadline = time.Now().Add(15 * time.Second)
	for !l.Healthy() {
		if time.Now().After(deadline) {
			t.Fatal("not healthy again after etcd came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	k, err := l.Lock(context.Background(), "cards/4")
	if err != nil {
		t.Fatal(err)
	}
	_ = k.Unlock(context.Background())
}
