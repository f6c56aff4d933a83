package link

import (
	"errors"
	"io"
	"math"
	"net"
	"sync"
	"time"

	"github.com/moov-io/iso8583"
	"golang.org/x/time/rate"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/metric"
)

// Limits a link can breach, as goldcard_limit_breaches_total names them.
const (
	limitIdle      = metric.LimitIdle
	limitSlowFrame = metric.LimitSlowFrame
	limitFrameSize = metric.LimitFrameSize
	limitRate      = metric.LimitRate
)

// Read-limit errors end a link's read loop.
var (
	errIdle      = errors.New("link idle for longer than the idle timeout")
	errSlowFrame = errors.New("frame not complete within the frame timeout")
)

// errOverRate declines a request over the link's request rate; it maps
// to 91 like any unavailability.
var errOverRate = refusal{"issuer unavailable: over the link's request rate", iso.ErrUnavailable}

// readLimits bound what one link's peer may do while it is read. A link
// keeps the limits it started with.
type readLimits struct {
	idle  time.Duration // 0: a link may stay idle for ever
	frame time.Duration // first byte to last of one frame
	rate  rate.Limit    // requests per second; rate.Inf: no limit
	burst int
}

// readLimitsOf returns the read limits of the banks on one listener:
// the most permissive of them, as for the other link limits.
func readLimitsOf(snap *config.Snapshot, codes []string) readLimits {
	var lim readLimits
	idleForever, unlimited, seen := false, false, false
	for _, code := range codes {
		b, ok := snap.Banks[code]
		if !ok {
			continue
		}
		seen = true
		idleForever = idleForever || b.IdleTimeout == 0
		unlimited = unlimited || b.MaxRequestRate == 0
		lim.idle = max(lim.idle, b.IdleTimeout.D())
		lim.frame = max(lim.frame, b.FrameTimeout.D())
		if r := rate.Limit(b.MaxRequestRate); r > lim.rate {
			lim.rate = r
		}
		lim.burst = max(lim.burst, rateBurst(b))
	}
	if !seen {
		d := config.NewBank()
		return readLimits{idle: d.IdleTimeout.D(), frame: d.FrameTimeout.D(), rate: rate.Inf}
	}
	if idleForever {
		lim.idle = 0
	}
	if unlimited {
		lim.rate, lim.burst = rate.Inf, 0
	}
	return lim
}

// rateBurst is the bank's rate_burst, or when unset one second's worth
// of requests (at least one).
func rateBurst(b *config.Bank) int {
	if b.RateBurst > 0 {
		return b.RateBurst
	}
	return max(1, int(math.Ceil(b.MaxRequestRate)))
}

// newLimiter returns the link's request-rate limiter, or nil for none.
func (r readLimits) newLimiter() *rate.Limiter {
	if r.rate == rate.Inf || r.rate <= 0 {
		return nil
	}
	return rate.NewLimiter(r.rate, r.burst)
}

// frameClock passes reads through and starts the frame timeout when the
// first bytes of a frame arrive. Only the link's reader uses it.
type frameClock struct {
	l       *link
	r       io.Reader
	started bool
}

func (c *frameClock) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 && !c.started {
		c.started = true
		c.l.readBy(c.l.read.frame)
	}
	return n, err
}

// readFrame reads one frame under the link's read limits: the idle
// timeout runs until its first byte, the frame timeout from then to its
// last. A breach is counted, logged and returned as errIdle or
// errSlowFrame; the link is then closed.
func (l *link) readFrame(r io.Reader) ([]byte, error) {
	l.clock.r, l.clock.started = r, false
	l.readBy(l.read.idle)
	body, err := iso.ReadFrame(&l.clock, l.header, l.maxFrame)
	var ne net.Error
	if err == nil || l.draining.Load() || !errors.As(err, &ne) || !ne.Timeout() {
		return body, err
	}
	if !l.clock.started {
		l.breach(limitIdle, "closed_idle")
		l.log.Warn("closing link: idle", "limit", limitIdle, "idle_timeout", l.read.idle)
		return nil, errIdle
	}
	l.breach(limitSlowFrame, "closed_slow_frame")
	l.log.Warn("closing link: frame not complete in time", "limit", limitSlowFrame, "frame_timeout", l.read.frame)
	return nil, errSlowFrame
}

// readBy gives the reader until d from now (0: no deadline). A draining
// link's reader must wake at once, so drain's deadline is never
// overwritten: drain sets draining before its deadline, and this checks
// draining after setting its own.
func (l *link) readBy(d time.Duration) {
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	_ = l.nc.SetReadDeadline(t)
	if l.draining.Load() {
		_ = l.nc.SetReadDeadline(time.Now())
	}
}

// breach counts a breached limit and, if the link is closed for it, the
// connection event.
func (l *link) breach(limit, event string) {
	l.env.m.limitBreaches.WithLabelValues(l.bank, limit).Inc()
	if event != "" {
		l.env.m.connEvents.WithLabelValues(l.bank, event).Inc()
	}
}

// overRate reports whether msg is over the link's request rate.
func (l *link) overRate(now time.Time) bool {
	return l.limiter != nil && !l.limiter.AllowN(now, 1)
}

// declineOverRate answers a request over the link's request rate with 91
// without working on it. It holds the request's slot until answered, so
// a flood still waits on max_in_flight. The warning is logged at most
// once a second per link, with the count since the last one.
func (l *link) declineOverRate(msg *iso8583.Message, arrival time.Time, step int) {
	defer func() { <-l.slots }()
	defer l.inFlight.Add(-1)
	l.breach(limitRate, "")
	if n, ok := l.rateLog.note(arrival); ok {
		l.log.Warn("requests over the link's rate answered 91", "limit", limitRate, "requests", n,
			"max_request_rate", float64(l.read.rate), "rate_burst", l.read.burst)
	}
	mti, _ := msg.GetMTI()
	if _, isRequest := iso.ResponseMTI(mti); !isRequest {
		return
	}
	resp, res := l.env.h.Refuse(nil, l.dialect, msg, errOverRate)
	lost := resp == nil || !l.send(resp, step, 0)
	// Counted, not logged one by one: a flood must not flood the log.
	res.Answered(l.bank, arrival, lost, true)
}

// breachLog lets a repeated breach be logged at most once per second,
// with how many there were since the line before.
type breachLog struct {
	mu      sync.Mutex // guards next and pending
	next    time.Time
	pending int
}

// note records one breach at now and reports whether to log, with the
// count to log.
func (b *breachLog) note(now time.Time) (int, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.pending++
	if now.Before(b.next) {
		return 0, false
	}
	n := b.pending
	b.pending, b.next = 0, now.Add(time.Second)
	return n, true
}
