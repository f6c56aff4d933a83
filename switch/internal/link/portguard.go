package link

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
)

// A bank port is shared only by switches of one identity: a switch of
// another config center or database would take part of the bank's
// connections and post them to another ledger. Every switch announces each
// bank port it serves, with its identity, before binding it (see
// announce), and checks what the host shows of the port before and after
// binding (see vetPort).
var (
	// errForeignSwitch is a bank port announced by a switch of another
	// identity.
	errForeignSwitch = errors.New("served by another Goldcard switch (other config center or database): refusing to share it")
	// errStranger is a bank port with more listeners than switches
	// announcing it: a program that is not a Goldcard switch (or one
	// too old to announce its ports) holds it with SO_REUSEPORT.
	errStranger = errors.New("held by a program that is not a Goldcard switch (it listens with SO_REUSEPORT): refusing to share it")
)

// isRefusal says whether err is a bank port refused for its holder, which
// binding again does not change.
func isRefusal(err error) bool {
	return errors.Is(err, errForeignSwitch) || errors.Is(err, errStranger)
}

// bindBankPort binds addr with SO_REUSEPORT for a switch of identity id,
// with the announcement that it serves the port; closing the listener
// first, then the announcement, leaves no moment where the listener is
// not announced. A port shared with a switch of another identity, or with
// a stranger, is refused.
//
// The port is announced before the host is looked at, so that of two
// switches of different identities starting at once, the later to look
// sees the other; a switch of another identity is seen before binding, so
// the port's connections never reach this one. Strangers are counted once
// bound: a holder without SO_REUSEPORT makes the bind fail (an ordinary
// error, tried again), and only a bind that succeeded says the holder
// shares the port. A port the kernel picks (":0") is announced once bound:
// no one else can be on a port that was free.
func bindBankPort(addr, id string) (net.Listener, *announcement, error) {
	port, err := portOf(addr)
	if err != nil {
		return nil, nil, err
	}
	var ann *announcement
	if port != 0 {
		if ann, err = announce(port, id); err != nil {
			return nil, nil, err
		}
		if err := vetPort(port, id, false); err != nil {
			ann.close()
			return nil, nil, err
		}
	}
	lc := net.ListenConfig{Control: reusePort}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		ann.close()
		return nil, nil, err
	}
	if port == 0 {
		port = ln.Addr().(*net.TCPAddr).Port
		if ann, err = announce(port, id); err != nil {
			ln.Close()
			return nil, nil, err
		}
	}
	// Refusing a stranger here resets the few connections the kernel
	// may have queued for this listener since it bound.
	if err := vetPort(port, id, true); err != nil {
		ln.Close()
		ann.close()
		return nil, nil, err
	}
	return ln, ann, nil
}

// vetPort refuses port if a switch of another identity announces it, and
// once this switch has bound it (bound set), if it has more listeners than
// announcements: each switch's listener is announced from before it binds
// until after it closes, so a listener beyond them is a stranger's. The
// port alone counts, not the address: 0.0.0.0:P and 127.0.0.1:P can be
// bound side by side.
func vetPort(port int, id string, bound bool) error {
	c, ok, err := takeCensus(port)
	if err != nil {
		return fmt.Errorf("bank port :%d: checking who serves it: %w", port, err)
	}
	if !ok {
		return nil // this system has no census: ports are not checked
	}
	var foreign []string
	for _, a := range c.announcers {
		if a.identity != id {
			foreign = append(foreign, a.pid)
		}
	}
	if len(foreign) > 0 {
		slices.Sort(foreign)
		foreign = slices.Compact(foreign)
		return fmt.Errorf("bank port :%d is %w (process %s)", port, errForeignSwitch, strings.Join(foreign, ", "))
	}
	if bound && c.listeners > len(c.announcers) {
		return fmt.Errorf("bank port :%d is %w", port, errStranger)
	}
	return nil
}

// portCensus is what the host shows of a port: the switches'
// announcements of it and its listening sockets.
type portCensus struct {
	announcers []announcer
	listeners  int
}

// announcer is a switch announcing a port, named by its announcement.
type announcer struct {
	identity, pid string
}

// portOf is addr's port number, 0 if the kernel is to pick one.
func portOf(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	if p == "" {
		return 0, nil
	}
	return net.LookupPort("tcp", p)
}
