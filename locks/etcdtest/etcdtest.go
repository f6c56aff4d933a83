// Package etcdtest runs real etcd clusters in the test process.
package etcdtest

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/goldcard/goldcard/locks"
)

// Cluster is an embedded etcd cluster of one or more members.
type Cluster struct {
	t       testing.TB
	opts    []locks.EmbeddedOptions
	members []*locks.Embedded
}

// New starts a cluster of n members on free loopback ports; it is stopped
// when the test ends. A port found free may be taken by another process
// before etcd binds it: the cluster is then started again on new ports.
func New(t testing.TB, n int) *Cluster {
	t.Helper()
	var err error
	for range 5 {
		var c *Cluster
		if c, err = start(t, n); err == nil {
			t.Cleanup(func() {
				for i := range c.members {
					c.Stop(i)
				}
			})
			return c
		}
		if !errors.Is(err, syscall.EADDRINUSE) && !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatal(err)
	return nil
}

// start starts a cluster of n members on ports free a moment before.
func start(t testing.TB, n int) (*Cluster, error) {
	dir := t.TempDir()
	c := &Cluster{t: t}
	var ms []locks.Member
	for i := range n {
		cp, err := locks.FreePort()
		if err != nil {
			return nil, err
		}
		pp, err := locks.FreePort()
		if err != nil {
			return nil, err
		}
		ms = append(ms, locks.Member{
			Name:      fmt.Sprintf("m%d", i),
			Dir:       filepath.Join(dir, fmt.Sprintf("m%d", i)),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", cp),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", pp),
		})
	}
	c.members = make([]*locks.Embedded, n)
	for _, m := range ms {
		c.opts = append(c.opts, locks.EmbeddedOptions{Member: m, Cluster: ms})
	}
	// Members of a new cluster wait for each other, so start them together.
	errs := make(chan error, n)
	for i := range n {
		go func() {
			e, err := locks.StartEmbedded(c.opts[i])
			c.members[i] = e
			errs <- err
		}()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		for i := range c.members {
			if c.members[i] != nil {
				c.members[i].Close()
			}
		}
		return nil, first
	}
	return c, nil
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, o := range c.opts {
		out = append(out, o.ClientURL)
	}
	return out
}

// Client returns a client of the cluster, closed when the test ends.
func (c *Cluster) Client() *clientv3.Client {
	c.t.Helper()
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// Stop stops member i.
func (c *Cluster) Stop(i int) {
	if c.members[i] != nil {
		c.members[i].Close()
		c.members[i] = nil
	}
}

// Start restarts the given stopped members, with their data, together:
// a member only becomes ready once a quorum of members is up.
func (c *Cluster) Start(members ...int) {
	c.t.Helper()
	errs := make(chan error, len(members))
	for _, i := range members {
		go func() {
			if c.members[i] != nil {
				errs <- nil
				return
			}
			e, err := locks.StartEmbedded(c.opts[i])
			c.members[i] = e
			errs <- err
		}()
	}
	for range members {
		if err := <-errs; err != nil {
			c.t.Fatal(err)
		}
	}
}
