package locks_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/goldcard/goldcard/locks"
	"github.com/goldcard/goldcard/locks/etcdtest"
)

// BenchmarkLockUnlock is one uncontended acquire and release of a card's
// lock against a one-member etcd on loopback.
func BenchmarkLockUnlock(b *testing.B) {
	cl := etcdtest.New(b, 1)
	l := locks.New(cl.Client(), locks.Options{TTL: 5 * time.Second})
	defer l.Close()
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		k, err := l.Lock(ctx, fmt.Sprintf("cards/%d", i%1000))
		if err != nil {
			b.Fatal(err)
		}
		if err := k.Unlock(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
