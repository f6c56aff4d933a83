package locks

import (
	"context"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Election elects one leader among the processes running it under one
// name, on a session of its own.
type Election struct {
	client *clientv3.Client
	key    string
	id     string
	ttl    time.Duration
	log    *slog.Logger
}

// NewElection returns the election name (under the prefix's election/)
// in which this process stands as id.
func NewElection(client *clientv3.Client, o Options, name, id string) *Election {
	if o.Prefix == "" {
		o.Prefix = "/goldcard/"
	}
	if o.TTL <= 0 {
		o.TTL = 5 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Election{client: client, key: o.Prefix + "election/" + name, id: id, ttl: o.TTL, log: o.Log}
}

// Run stands for election until ctx ends. Each time this process wins, it
// calls lead with a context that ends when the leadership does (the
// session's lease is lost, or ctx ends) and a fencing token that grows
// with every new leader; when lead returns, it resigns and stands again.
func (e *Election) Run(ctx context.Context, lead func(ctx context.Context, token int64)) {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		if err := e.term(ctx, lead); err != nil && ctx.Err() == nil {
			e.log.Warn("election: standing again", "election", e.key, "err", err, "in", backoff)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 200 * time.Millisecond
	}
}

// term campaigns once and leads if elected.
func (e *Election) term(ctx context.Context, lead func(ctx context.Context, token int64)) error {
	gctx, cancel := context.WithTimeout(ctx, e.ttl)
	lease, err := e.client.Grant(gctx, int64((e.ttl+time.Second-1)/time.Second))
	cancel()
	if err != nil {
		return err
	}
	sess, err := concurrency.NewSession(e.client, concurrency.WithLease(lease.ID), concurrency.WithContext(ctx))
	if err != nil {
		return err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, _ = e.client.Revoke(rctx, lease.ID)
		sess.Orphan()
	}()
	// A campaign waits for the leaders before it; it ends if the session
	// is lost meanwhile.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-cctx.Done():
		}
	}()
	el := concurrency.NewElection(sess, e.key)
	if err := el.Campaign(cctx, e.id); err != nil {
		return err
	}
	e.log.Info("elected", "election", e.key, "id", e.id, "token", el.Rev())
	lead(cctx, el.Rev())
	if ctx.Err() == nil {
		e.log.Warn("leadership lost", "election", e.key, "id", e.id)
	}
	return nil
}

// Leader returns the id of the current leader, or "" if there is none.
func Leader(ctx context.Context, client *clientv3.Client, prefix, name string) (string, error) {
	resp, err := client.Get(ctx, prefix+"election/"+name+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}
