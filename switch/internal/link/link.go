package link

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moov-io/iso8583"
	connection "github.com/moov-io/iso8583-connection"
	isoerrors "github.com/moov-io/iso8583/errors"
	"golang.org/x/time/rate"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/switch/internal/fixture"
	"github.com/goldcard/goldcard/switch/internal/metric"
)

// writeTimeout bounds one write to a bank: a peer that stops reading loses
// its link rather than holding responses for everyone behind it.
const writeTimeout = 5 * time.Second

// errDraining ends a link's read loop during shutdown.
var errDraining = errors.New("link draining")

// Why the link answers a request itself.
var (
	errNotSignedOn = refusal{"link has not signed on: issuer unavailable", iso.ErrUnavailable}
	errPanicked    = errors.New("the request's handler panicked")
)

// refusal is a reason of the link's own to answer a request itself; its
// response code is that of kind (an iso error).
type refusal struct {
	reason string
	kind   error
}

func (r refusal) Error() string { return r.reason }
func (r refusal) Unwrap() error { return r.kind }

// link is one bank connection. moov's connection runs one reader and one
// writer goroutine; each request is handled on its own goroutine, at most
// MaxInFlight at a time: when all slots are taken the reader stops reading
// and TCP pushes back on the bank.
type link struct {
	env     *env
	ln      *bankListener
	bank    string // the listener's label, for metrics and logs
	dialect *iso.Dialect
	header  iso.Header
	// maxFrame is the longest body accepted and read holds the timeouts
	// and request rate: all fixed for the link's life.
	maxFrame int
	read     readLimits
	limiter  *rate.Limiter // nil: no request rate limit
	clock    frameClock    // the reader's alone
	rateLog  breachLog
	nc       net.Conn
	conn     *connection.Connection
	log      *slog.Logger

	slots    chan struct{}     // a token per request being read or worked on
	arrivals sync.Map          // *iso8583.Message -> arrived
	rec      *fixture.Recorder // nil unless the switch captures traffic
	draining atomic.Bool
	closed   chan struct{} // closed once the connection is closed
	once     sync.Once
	// connPtr is conn for the reader, which starts before conn is set;
	// ready is closed once it is set, for what the reader starts (the
	// answer to a first frame that cannot be unpacked) to write on.
	connPtr atomic.Pointer[connection.Connection]
	ready   chan struct{}
	// lastFrame is when the last frame arrived (unix nanoseconds);
	// inFlight counts requests read and not yet answered.
	lastFrame atomic.Int64
	inFlight  atomic.Int64

	stateMu sync.Mutex
	state   string // its goldcard_connections state
	gone    bool   // closed: counted no more
}

// setState moves the link from one state of the connections gauge to
// another; "" leaves the gauge for good. A draining link stays draining
// until closed.
func (l *link) setState(to string) {
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	if l.gone || l.state == to || (l.state == metric.LinkDraining && to != "") {
		return
	}
	l.gone = to == ""
	g := l.env.m.connections
	if l.state != "" {
		g.WithLabelValues(l.bank, l.state).Dec()
	}
	if to != "" {
		g.WithLabelValues(l.bank, to).Inc()
	}
	l.state = to
}

// signOn follows the bank's sign-on and sign-off.
func (l *link) signOn(res Result) {
	switch res.SignOn() {
	case 1:
		l.setState(metric.LinkSignedOn)
	case -1:
		l.setState(metric.LinkConnected)
	}
}

func newLink(bl *bankListener, lim linkLimits, nc net.Conn, log *slog.Logger) (*link, error) {
	l := &link{
		env:      bl.env,
		ln:       bl,
		bank:     bl.label(),
		dialect:  bl.dialect,
		header:   bl.header,
		maxFrame: lim.maxFrame,
		read:     lim.read,
		limiter:  lim.read.newLimiter(),
		nc:       nc,
		log:      log,
		slots:    make(chan struct{}, lim.maxInFlight),
		closed:   make(chan struct{}),
		ready:    make(chan struct{}),
		rec:      bl.env.capture.Open(bl.label(), bl.dialect, bl.header, nc.RemoteAddr().String()),
	}
	l.clock.l = l // before the reader starts, in connection.NewFrom
	c, err := connection.NewFrom(deadlineConn{nc}, bl.dialect.Spec, nil, nil,
		connection.SetMessageReader(l),
		connection.InboundMessageHandler(l.handle),
		connection.ErrorHandler(l.onError),
		connection.ConnectionClosedHandler(func(*connection.Connection) { l.markClosed() }),
		connection.SendTimeout(writeTimeout),
		connection.SetRequestIDGenerator(anyMessageID{}),
	)
	if err != nil {
		return nil, err
	}
	l.conn = c
	l.connPtr.Store(c)
	close(l.ready)
	// A link accepted while draining gets its quiet time to send.
	l.lastFrame.Store(time.Now().UnixNano())
	return l, nil
}

// ReadMessage reads frames until one unpacks. A frame that does not is
// answered with 30 where its MTI is readable and is otherwise only logged
// and counted; the link carries on. A request over the link's rate is
// answered 91 unworked. A frame over the maximum length, an idle link, a
// frame that does not arrive whole in time, or a broken stream ends the
// link.
func (l *link) ReadMessage(r io.Reader) (*iso8583.Message, error) {
	for {
		select {
		case l.slots <- struct{}{}:
		case <-l.closed:
			return nil, errDraining
		}
		if l.draining.Load() {
			return nil, l.stopReading()
		}
		body, err := l.readFrame(r)
		arrival := time.Now()
		l.lastFrame.Store(arrival.UnixNano())
		if err != nil {
			if l.draining.Load() {
				return nil, l.stopReading()
			}
			<-l.slots
			if errors.Is(err, iso.ErrFrameTooLarge) {
				l.breach(limitFrameSize, "closed_bad_frame")
				l.log.Warn("closing link: unusable frame", "limit", limitFrameSize, "err", err)
			} else if errors.Is(err, iso.ErrBadHeader) {
				l.env.m.connEvents.WithLabelValues(l.bank, "closed_bad_frame").Inc()
				l.log.Warn("closing link: unusable frame", "err", err)
			}
			return nil, err
		}
		if l.isClosed() {
			// Closed while the frame was read: moov's dispatcher has
			// stopped, and nothing may be handed to it.
			<-l.slots
			return nil, errDraining
		}
		l.env.m.frames.WithLabelValues(l.bank, "in").Inc()
		l.env.m.bytes.WithLabelValues(l.bank, "in").Add(float64(l.header.Size() + len(body)))
		msg, err := l.dialect.Unpack(body)
		if err != nil {
			l.inFlight.Add(1)
			step := l.rec.In(body, nil, arrival)
			go l.badFrame(body, msg, err, arrival, step)
			continue
		}
		if l.overRate(arrival) {
			l.inFlight.Add(1)
			go l.declineOverRate(msg, arrival, l.rec.In(body, msg, arrival))
			continue
		}
		l.arrivals.Store(msg, arrived{at: arrival, step: l.rec.In(body, msg, arrival), body: body})
		l.env.m.inFlight.WithLabelValues(l.bank).Inc()
		l.inFlight.Add(1)
		return msg, nil
	}
}

// arrived is when a request was read, and its step in the link's
// capture.
type arrived struct {
	at   time.Time
	step int
	body []byte // as read, for its MAC
}

// stopReading parks the reader until the drained link is closed.
func (l *link) stopReading() error {
	<-l.slots
	<-l.closed
	return errDraining
}

// badFrame answers a frame that could not be unpacked.
func (l *link) badFrame(body []byte, partial *iso8583.Message, err error, arrival time.Time, step int) {
	defer func() { <-l.slots }()
	defer l.inFlight.Add(-1)
	l.env.m.unpackErrors.WithLabelValues(l.bank, unpackFailure(err)).Inc()
	mti, ok := l.dialect.ReadMTI(body)
	if _, isRequest := iso.ResponseMTI(mti); !ok || !isRequest {
		l.log.Warn("unreadable frame dropped", "bytes", len(body), "err", unpackReason(err))
		return
	}
	l.log.Warn("unreadable frame answered with 30", "mti", mti, "err", unpackReason(err))
	var ue *isoerrors.UnpackError
	if errors.As(err, &ue) {
		if id, cerr := strconv.Atoi(ue.FieldID); cerr == nil {
			partial.UnsetField(id) // what of it was read cannot be echoed
		}
	}
	resp, res := l.env.h.Refuse(nil, l.dialect, partial, iso.ErrFormat)
	if resp == nil {
		return
	}
	lost := !l.send(resp, step, 0)
	res.Answered(l.bank, arrival, lost, false)
}

// handle answers one request; moov runs it on its own goroutine.
func (l *link) handle(_ *connection.Connection, msg *iso8583.Message) {
	defer func() { <-l.slots }()
	v, ok := l.arrivals.LoadAndDelete(msg)
	if !ok {
		return // not read by this link's reader
	}
	defer l.env.m.inFlight.WithLabelValues(l.bank).Dec()
	defer l.inFlight.Add(-1)
	a := v.(arrived)
	arrival := a.at
	defer func() {
		if r := recover(); r != nil {
			l.log.Error("request handler panicked", "panic", r, "stack", string(debug.Stack()))
			l.env.h.Failed(errPanicked).Answered(l.bank, arrival, false, false)
		}
	}()

	snap := l.env.cfg.Load()
	bank, err := l.route(snap, msg)
	if err != nil {
		mti, _ := msg.GetMTI()
		l.log.Warn("message not routed", "mti", mti, "err", err)
		resp, res := l.env.h.Refuse(nil, l.dialect, msg, err)
		lost := resp != nil && !l.send(resp, a.step, 0)
		res.Answered(l.bank, arrival, lost, false)
		return
	}
	key, err := l.env.macs.verify(bank, a.body, msg)
	if err == nil {
		err = l.signedOn(bank, msg)
	}
	if err != nil {
		l.refuse(bank, key, msg, a, err)
		return
	}
	ctx, cancel := context.WithDeadline(l.env.base, arrival.Add(bank.Budget()))
	defer cancel()
	resp, res := l.env.h.Handle(ctx, bank, l.dialect, snap.Limits, msg, a.body)
	lost := resp != nil && !l.send(l.sign(key, resp), a.step, res.Seq())
	l.signOn(res)
	res.Answered(bank.Code, arrival, lost, false)
}

// signedOn refuses a financial message on a link that has not signed on,
// when the bank requires it.
func (l *link) signedOn(bank *config.Bank, msg *iso8583.Message) error {
	if !bank.RequireSignOn {
		return nil
	}
	if mti, _ := msg.GetMTI(); strings.HasPrefix(mti, "08") {
		return nil
	}
	l.stateMu.Lock()
	on := l.state == metric.LinkSignedOn
	l.stateMu.Unlock()
	if !on {
		return errNotSignedOn
	}
	return nil
}

// refuse answers a request the link may not pass on (a MAC that does not
// verify, a link not signed on) without working on it: nothing is posted.
// The answer to a request whose MAC failed carries none: signing what an
// unauthenticated peer chose would hand out MACs of its choosing.
func (l *link) refuse(bank *config.Bank, key *iso.MACKey, msg *iso8583.Message, a arrived, err error) {
	switch {
	case errors.Is(err, iso.ErrNoMAC):
		l.env.m.macFailures.WithLabelValues(bank.Code, "missing").Inc()
	case errors.Is(err, iso.ErrBadMAC):
		l.env.m.macFailures.WithLabelValues(bank.Code, "mismatch").Inc()
	}
	resp, res := l.env.h.Refuse(bank, l.dialect, msg, err)
	lost := resp != nil && !l.send(l.sign(key, resp), a.step, 0)
	res.Answered(bank.Code, a.at, lost, false)
}

// sign adds the MAC to a response when the bank uses one. A response that
// cannot be signed goes as it is (its money has moved): the bank declines
// it, and the log says why.
func (l *link) sign(key *iso.MACKey, resp []byte) []byte {
	if key == nil {
		return resp
	}
	signed, err := key.Sign(l.dialect, resp)
	if err != nil {
		l.log.Error("response could not be signed; sent without a MAC", "err", err)
		return resp
	}
	return signed
}

// send writes one response body with its length header, the answer to
// the capture's step, answering the ledger's request seq. It reports false
// when the link is gone.
func (l *link) send(body []byte, step int, seq int64) bool {
	answered := time.Now()
	select {
	case <-l.ready:
	case <-l.closed:
		return false
	}
	frame, err := iso.Frame(l.header, body)
	if err == nil {
		_, err = l.conn.Write(frame)
	}
	if err != nil {
		l.env.m.lostResponses.WithLabelValues(l.bank).Inc()
		l.log.Warn("response not delivered", "err", err)
		return false
	}
	l.env.m.frames.WithLabelValues(l.bank, "out").Inc()
	l.env.m.bytes.WithLabelValues(l.bank, "out").Add(float64(len(frame)))
	l.rec.Out(step, body, answered, seq)
	return true
}

func (l *link) onError(err error) {
	if errors.Is(err, errDraining) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return
	}
	l.log.Debug("link error", "err", err)
}

func (l *link) markClosed() {
	l.once.Do(func() {
		close(l.closed)
		l.rec.Close()
	})
}

// isClosed reports whether the connection has been closed, by either side.
func (l *link) isClosed() bool {
	var done <-chan struct{}
	if c := l.connPtr.Load(); c != nil {
		done = c.Done()
	}
	select {
	case <-l.closed:
		return true
	case <-done:
		return true
	default:
		return false
	}
}

// drainQuiet is how long a draining link must go without a request before
// it stops reading: a bank that sent one just as the switch began to drain
// still gets its answer.
const drainQuiet = 200 * time.Millisecond

// drain answers what the bank sends until the link has been quiet for
// drainQuiet (or ctx is about to end), then stops reading, waits for the
// requests in flight to be answered (or ctx to end), and closes the link.
func (l *link) drain(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		last := time.Unix(0, l.lastFrame.Load())
		if l.inFlight.Load() == 0 && time.Since(last) >= drainQuiet {
			break
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < time.Second {
			break // leave time to finish what was read
		}
		select {
		case <-ctx.Done():
		case <-l.closed:
			return
		case <-t.C:
			continue
		}
		break
	}
	l.draining.Store(true)
	l.setState(metric.LinkDraining)
	_ = l.nc.SetReadDeadline(time.Now()) // wake a reader waiting for a frame
	for range cap(l.slots) {
		select {
		case l.slots <- struct{}{}:
		case <-ctx.Done():
			l.log.Warn("closing link with requests still in flight")
			l.close()
			return
		}
	}
	l.close()
}

func (l *link) close() {
	_ = l.conn.Close()
	l.markClosed()
}

// anyMessageID names every inbound message for moov's dispatcher. moov
// drops a message whose id cannot be made (a response MTI without DE11),
// which would leave its in-flight slot taken; the switch never sends
// requests, so any id does.
type anyMessageID struct{}

func (anyMessageID) GenerateRequestID(m *iso8583.Message) (string, error) {
	if s, _ := m.GetString(11); s != "" {
		return s, nil
	}
	return "-", nil
}

// deadlineConn gives each write a deadline.
type deadlineConn struct{ net.Conn }

func (c deadlineConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return c.Conn.Write(p)
}
