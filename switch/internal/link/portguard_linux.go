//go:build linux

package link

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// announcementPrefix begins the names of the abstract unix sockets by
// which switches announce the bank ports they serve:
// <prefix><port>/<identity>/<pid>/<n>. An abstract socket is no file: it
// is listed in /proc/net/unix while it is open and goes with its process,
// so a crashed switch leaves nothing behind.
const announcementPrefix = "@goldcard/bank-port/"

// announced numbers this process's announcements, which must differ: one
// port may be announced twice, by a listener and its replacement.
var announced atomic.Uint64

// announcement is a switch's word that it serves a bank port.
type announcement struct {
	c *net.UnixConn
}

func announce(port int, id string) (*announcement, error) {
	name := fmt.Sprintf("%s%d/%s/%d/%d", announcementPrefix, port, id, os.Getpid(), announced.Add(1))
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("announcing bank port :%d: %w", port, err)
	}
	return &announcement{c: c}, nil
}

// close withdraws the announcement; nil is none.
func (a *announcement) close() {
	if a != nil {
		_ = a.c.Close()
	}
}

// takeCensus reads the host's announcements of port from /proc/net/unix
// and its listeners from /proc/net/tcp and /proc/net/tcp6.
func takeCensus(port int) (portCensus, bool, error) {
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return portCensus{}, false, err
	}
	defer f.Close()
	var c portCensus
	if c.announcers, err = readAnnouncements(f, port); err != nil {
		return portCensus{}, false, fmt.Errorf("reading /proc/net/unix: %w", err)
	}
	for _, path := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // no IPv6
		}
		if err != nil {
			return portCensus{}, false, err
		}
		n, err := countListeners(f, port)
		f.Close()
		if err != nil {
			return portCensus{}, false, fmt.Errorf("reading %s: %w", path, err)
		}
		c.listeners += n
	}
	return c, true, nil
}

// readAnnouncements lists the announcements of port in a /proc/net/unix
// listing, whose lines end with the socket's name.
func readAnnouncements(r io.Reader, port int) ([]announcer, error) {
	want := announcementPrefix + strconv.Itoa(port) + "/"
	var out []announcer
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 8 {
			continue
		}
		rest, ok := strings.CutPrefix(fields[7], want)
		if !ok {
			continue
		}
		parts := strings.Split(rest, "/")
		a := announcer{identity: parts[0]}
		if len(parts) > 1 {
			a.pid = parts[1]
		}
		out = append(out, a)
	}
	return out, sc.Err()
}

// tcpListen is the LISTEN state in /proc/net/tcp.
const tcpListen = "0A"

// countListeners counts the listening sockets on port in a /proc/net/tcp
// or tcp6 listing: "sl local_address rem_address st ...", the local
// address as hex IP:port.
func countListeners(r io.Reader, port int) (int, error) {
	want := fmt.Sprintf(":%04X", port)
	n := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[3] != tcpListen {
			continue
		}
		if strings.HasSuffix(fields[1], want) {
			n++
		}
	}
	return n, sc.Err()
}
