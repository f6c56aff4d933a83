package locks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// ErrUnavailable is returned when etcd cannot be reached: the caller
// should give up at once rather than wait for it.
var ErrUnavailable = errors.New("locks: etcd unavailable")

// Options configure a Locker.
type Options struct {
	// Prefix is prepended to every key (default "/goldcard/").
	Prefix string
	// TTL is the session lease's time to live (default 5s): how long a
	// crashed process's locks outlive it.
	TTL time.Duration
	// ProbeEvery is how often etcd's health is checked (default 1s).
	ProbeEvery time.Duration
	Log        *slog.Logger
}

// Locker hands out etcd mutexes. Same-key callers in one process queue
// in the process first, so etcd only sees one waiter per process.
type Locker struct {
	client *clientv3.Client
	opts   Options
	local  keyed

	mu   sync.Mutex // guards sess
	sess *concurrency.Session

	healthy atomic.Bool
	// life lives as long as the Locker; sessions keep their lease alive
	// under it.
	life context.Context
	stop context.CancelFunc
	done chan struct{}
}

// New returns a Locker on client and starts watching etcd's health. It
// does not fail when etcd is down: locks are refused until it is back.
func New(client *clientv3.Client, o Options) *Locker {
	if o.Prefix == "" {
		o.Prefix = "/goldcard/"
	}
	if o.TTL <= 0 {
		o.TTL = 5 * time.Second
	}
	if o.ProbeEvery <= 0 {
		o.ProbeEvery = time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Locker{client: client, opts: o, life: ctx, stop: cancel, done: make(chan struct{})}
	l.probe(ctx)
	go l.watch(ctx)
	return l
}

// Healthy reports whether etcd answered the last probe.
func (l *Locker) Healthy() bool { return l.healthy.Load() }

func (l *Locker) watch(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.opts.ProbeEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.probe(ctx)
		}
	}
}

// probe checks that etcd serves a linearizable read and that the session
// is alive, making a new session when the old one was lost.
func (l *Locker) probe(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, l.opts.ProbeEvery/2+200*time.Millisecond)
	defer cancel()
	_, err := l.client.Get(pctx, l.opts.Prefix+"health")
	if err == nil {
		_, err = l.session(pctx)
	}
	was := l.healthy.Swap(err == nil)
	switch {
	case err != nil && was:
		l.opts.Log.Warn("etcd unavailable: locked work is refused until it is back", "err", err)
	case err == nil && !was:
		l.opts.Log.Info("etcd available")
	}
}

// session returns the live session, making one if there is none.
func (l *Locker) session(ctx context.Context) (*concurrency.Session, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sess != nil {
		select {
		case <-l.sess.Done():
			l.opts.Log.Warn("etcd session lost: its locks are gone", "lease", fmt.Sprintf("%x", l.sess.Lease()))
			l.sess = nil
		default:
			return l.sess, nil
		}
	}
	ttl := int64((l.opts.TTL + time.Second - 1) / time.Second)
	lease, err := l.client.Grant(ctx, ttl)
	if err != nil {
		return nil, err
	}
	s, err := concurrency.NewSession(l.client, concurrency.WithLease(lease.ID), concurrency.WithContext(l.life))
	if err != nil {
		return nil, err
	}
	l.sess = s
	return s, nil
}

// Lock is a held mutex.
type Lock struct {
	l       *Locker
	s       *concurrency.Session
	m       *concurrency.Mutex
	token   int64
	done    <-chan struct{}
	release func()
	once    sync.Once
}

// Token is the fencing token: the etcd revision at which the lock was
// taken. Every later holder of the same key has a larger one.
func (k *Lock) Token() int64 { return k.token }

// Done is closed when the session behind the lock is lost; work under the
// lock must stop.
func (k *Lock) Done() <-chan struct{} { return k.done }

// Context returns a child of ctx that is also cancelled, with cause
// ErrLost, when the lock is lost.
func (k *Lock) Context(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-k.done:
			cancel(ErrLost)
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(nil) }
}

// ErrLost is the cause of a Lock.Context cancelled by losing the lock.
var ErrLost = errors.New("locks: lock lost with its etcd session")

// Unlock releases the lock. It is safe to call more than once. If etcd
// cannot be told, the whole session is abandoned: its lease, and with it
// this lock's key, expires within the TTL instead of blocking the key for
// other processes as long as this one lives.
func (k *Lock) Unlock(ctx context.Context) error {
	var err error
	k.once.Do(func() {
		defer k.release()
		if err = k.m.Unlock(ctx); err != nil {
			k.l.abandon(k.s, err)
		}
	})
	return err
}

// abandon drops session s if it is still the current one.
func (l *Locker) abandon(s *concurrency.Session, why error) {
	l.mu.Lock()
	if l.sess == s {
		l.sess = nil
	}
	l.mu.Unlock()
	s.Orphan()
	l.opts.Log.Warn("etcd session abandoned: its locks expire with its lease", "lease", fmt.Sprintf("%x", s.Lease()), "err", why)
}

// Lock takes the mutex named key (under the prefix's locks/), waiting no
// longer than ctx allows. It fails at once with ErrUnavailable when etcd
// is known to be down.
func (l *Locker) Lock(ctx context.Context, key string) (*Lock, error) {
	if !l.healthy.Load() {
		return nil, ErrUnavailable
	}
	if err := l.local.lock(ctx, key); err != nil {
		return nil, err
	}
	release := func() { l.local.unlock(key) }
	s, err := l.session(ctx)
	if err != nil {
		release()
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	m := concurrency.NewMutex(s, l.opts.Prefix+"locks/"+key)
	if err := m.Lock(ctx); err != nil {
		// The waiter's key may have been written before the failure: take
		// it away (or give up the session if etcd cannot be told) before
		// this process may queue for the key again; the caller need not
		// wait for that.
		go func() {
			defer release()
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if _, derr := l.client.Delete(dctx, m.Key()); derr != nil {
				l.abandon(s, derr)
			}
		}()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return &Lock{l: l, s: s, m: m, token: m.Header().Revision, done: s.Done(), release: release}, nil
}

// Close releases the session (and with it every lock still held) and
// stops watching etcd.
func (l *Locker) Close() error {
	l.stop()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sess == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := l.client.Revoke(ctx, l.sess.Lease())
	l.sess.Orphan()
	l.sess = nil
	return err
}

// keyed is a set of in-process mutexes by key.
type keyed struct {
	mu sync.Mutex // guards m
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	ch   chan struct{}
	refs int
}

func (k *keyed) lock(ctx context.Context, key string) error {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[string]*keyedEntry)
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{ch: make(chan struct{}, 1)}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	select {
	case e.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		k.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
		return ctx.Err()
	}
}

func (k *keyed) unlock(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.m[key]
	<-e.ch
	e.refs--
	if e.refs == 0 {
		delete(k.m, key)
	}
}
