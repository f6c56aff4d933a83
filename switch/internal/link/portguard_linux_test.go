//go:build linux

package link

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
)

func TestReadAnnouncements(t *testing.T) {
	const listing = `Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00000000 0002 01 40001 @goldcard/bank-port/8583/00aa11bb22cc33dd/101/1
0000000000000000: 00000002 00000000 00000000 0002 01 40002 @goldcard/bank-port/8583/00aa11bb22cc33dd/101/2
0000000000000000: 00000002 00000000 00000000 0002 01 40003 @goldcard/bank-port/8584/ffffffffffffffff/102/1
0000000000000000: 00000002 00000000 00000000 0002 01 40004 @goldcard/bank-port/85830/ffffffffffffffff/103/1
0000000000000000: 00000002 00000000 00010000 0001 01 40005 /run/goldcard/bank-port/8583/ffffffffffffffff/104/1
0000000000000000: 00000003 00000000 00000000 0001 03 40006
`
	got, err := readAnnouncements(strings.NewReader(listing), 8583)
	if err != nil {
		t.Fatal(err)
	}
	want := []announcer{{"00aa11bb22cc33dd", "101"}, {"00aa11bb22cc33dd", "101"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("announcements of 8583: %v, want %v", got, want)
	}
}

func TestCountListeners(t *testing.T) {
	const listing = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2187 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000:2187 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2 1 0000000000000000 100 0 0 10 0
   2: 0100007F:2187 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 3 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:D431 0100007F:2187 01 00000000:00000000 00:00000000 00000000  1000        0 4 1 0000000000000000 20 4 30 10 -1
   4: 0100007F:12187 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5 1 0000000000000000 100 0 0 10 0
   5: 0100007F:2188 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 6 1 0000000000000000 100 0 0 10 0
`
	n, err := countListeners(strings.NewReader(listing), 8583) // 0x2187
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d listeners on 8583, want 2 (established connections are none)", n)
	}
}

// TestBindBankPort: on this host's real sockets, switches of one identity
// share a port, one of another identity is refused, and so is a stranger
// on any address of the port.
func TestBindBankPort(t *testing.T) {
	const ours, theirs = "0123456789abcdef", "fedcba9876543210"
	ln, ann, err := bindBankPort("127.0.0.1:0", ours)
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln2, ann2, err := bindBankPort(addr, ours)
	if err != nil {
		t.Fatalf("a second listener of the same identity: %v", err)
	}
	if _, _, err := bindBankPort(addr, theirs); !errors.Is(err, errForeignSwitch) {
		t.Fatalf("another identity on the port: %v", err)
	}
	ln2.Close()
	ann2.close()
	ln.Close()
	ann.close()
	// Gone, the port is anyone's.
	ln, ann, err = bindBankPort(addr, theirs)
	if err != nil {
		t.Fatalf("the port once free: %v", err)
	}
	ln.Close()
	ann.close()

	stranger, err := (&net.ListenConfig{Control: reusePort}).Listen(context.Background(), "tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	for _, a := range []string{addr, ":" + port, "0.0.0.0:" + port} {
		if _, _, err := bindBankPort(a, ours); !errors.Is(err, errStranger) {
			t.Fatalf("%s beside a stranger on 127.0.0.1:%s: %v", a, port, err)
		}
	}
}

// withBank is s's config at a new revision, with bank code put on addr.
func withBank(t *testing.T, s *Listeners, code, addr string) *config.Snapshot {
	t.Helper()
	cur := s.env.cfg.Load()
	kvs := cur.Values()
	kvs["banks/"+code] = []byte(`{"listen":"` + addr + `","acquirers":["777"]}`)
	snap, err := config.Build(cur.Revision+1, kvs, iso.BuiltinSpecs())
	if err == nil {
		err = snap.Validate(nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	s.env.cfg.Swap(snap)
	return snap
}

// TestRefusalNotRetried: a listener refused for its port's holder is
// reported and not tried again until the config changes; one that would
// not bind is tried again.
func TestRefusalNotRetried(t *testing.T) {
	t.Parallel()
	srv := testListeners(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	ln.Close()
	other, err := announce(p, "fedcba9876543210")
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Apply(withBank(t, srv, "acme", addr))
	if !errors.Is(err, errForeignSwitch) || !strings.Contains(err.Error(), "bank port :"+port) {
		t.Fatalf("a bank on another switch's port: %v", err)
	}
	if srv.retrying.Load() || srv.BankAddr("acme") != nil {
		t.Fatal("the refused listener is being tried again")
	}
	if err := srv.reconcile(srv.env.cfg.Load(), true); !errors.Is(err, errForeignSwitch) {
		t.Fatalf("trying again: %v", err)
	}

	// Its holder gone, a change to the config tries it anew.
	other.close()
	if err := srv.Apply(withBank(t, srv, "acme", addr)); err != nil {
		t.Fatal(err)
	}
	if srv.BankAddr("acme") == nil {
		t.Fatal("acme's listener did not open")
	}

	// A port taken without SO_REUSEPORT is an ordinary bind error.
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	err = srv.Apply(withBank(t, srv, "bravo", plain.Addr().String()))
	if err == nil || isRefusal(err) || !srv.retrying.Load() {
		t.Fatalf("a bank on a port bound without SO_REUSEPORT: %v, retrying %v", err, srv.retrying.Load())
	}
}

// TestBindBankPortRace: of two identities binding one port at once, at
// most one has it, however their steps interleave.
func TestBindBankPortRace(t *testing.T) {
	t.Parallel()
	for range 200 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			lns   [2]net.Listener
			anns  [2]*announcement
			errs  [2]error
		)
		for i, id := range []string{"0123456789abcdef", "fedcba9876543210"} {
			wg.Go(func() {
				<-start
				lns[i], anns[i], errs[i] = bindBankPort(addr, id)
			})
		}
		close(start)
		wg.Wait()
		if errs[0] == nil && errs[1] == nil {
			t.Fatalf("two identities both bound %s", addr)
		}
		for i := range lns {
			if errs[i] != nil && !isRefusal(errs[i]) {
				t.Fatalf("binding %s: %v", addr, errs[i])
			}
			if lns[i] != nil {
				lns[i].Close()
				anns[i].close()
			}
		}
	}
}
