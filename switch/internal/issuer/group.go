package issuer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
)

// Group commit: new originals (authorisations and financial requests) are
// decided many at a time, in one ledger transaction whose statements are
// set-based (ledger.LookupGroup, ledger.SaveGroup), and every response of
// a group is written only after the group has committed. Whatever a group
// cannot decide in one go (a repeat, a request an early reversal waits
// for, a shortfall to redeem) is decided on its own afterwards, by the
// single-request path; a group that fails is split in two and each half
// tried again, so that a request that fails fails alone.

// Group commit defaults.
const (
	DefaultCommitWindow  = time.Millisecond
	DefaultCommitSize    = 128
	DefaultCommitBatches = 4
)

// committer gathers requests into groups and commits them.
type committer struct {
	l   *ledger.Ledger
	m   *metrics
	log *slog.Logger
	// unknown answers a request whose group's commit never came back.
	unknown func(ctx context.Context, f ledger.Find, r *iso.Request) (Answer, error)
	window  time.Duration
	size    int
	// slots bounds the groups in flight; inflight counts them.
	slots    chan struct{}
	inflight atomic.Int32

	mu   sync.Mutex
	open *group // the group new members join, if any
}

// group is the members of one commit.
type group struct {
	members []*member
	full    chan struct{} // closed once the group is full (and no longer open)
}

// member is one request in a group.
type member struct {
	ctx    context.Context
	f      ledger.Find
	r      *iso.Request
	decide func(lk *ledger.Lookup) (decision, ledger.Record, []ledger.Effect, error)
	build  func(decision) ([]byte, error)

	done chan struct{} // closed once rep, err and alone are set
	rep  Answer
	err  error
	// alone asks for the request to be decided on its own; need, when
	// set, is the shortfall its group found it must redeem.
	alone bool
	need  *needsRedemption
	// saved: its group wrote it, and it stands or falls with the commit.
	saved bool

	// Set while a group is being decided: the decision, the response
	// stored with it and the id it was stored under.
	o    decision
	resp []byte
	seq  int64
}

func newCommitter(l *ledger.Ledger, m *metrics, log *slog.Logger, o GroupCommit) *committer {
	if log == nil {
		log = slog.Default()
	}
	c := &committer{l: l, m: m, log: log, window: o.Window, size: o.Size}
	if c.size <= 0 {
		c.size = DefaultCommitSize
	}
	if c.window < 0 {
		c.window = 0
	}
	batches := o.Batches
	if batches <= 0 {
		batches = DefaultCommitBatches
	}
	c.slots = make(chan struct{}, batches)
	return c
}

// decide decides m with others in a group. It reports alone when m must
// be decided on its own instead.
func (c *committer) decide(m *member) (Answer, error, bool) {
	c.mu.Lock()
	g, lead := c.open, false
	if g == nil {
		g, lead = &group{full: make(chan struct{})}, true
		c.open = g
	}
	g.members = append(g.members, m)
	if len(g.members) >= c.size {
		c.open = nil
		close(g.full)
	}
	c.mu.Unlock()
	if lead {
		c.lead(g)
	}
	<-m.done
	return m.rep, m.err, m.alone
}

// lead closes g and commits it: at once when no other group is in flight,
// else once it is full or the window has passed, and a slot is free (it
// goes on filling while it waits for one).
func (c *committer) lead(g *group) {
	if c.inflight.Load() > 0 && c.window > 0 {
		t := time.NewTimer(c.window)
		select {
		case <-g.full:
		case <-t.C:
		}
		t.Stop()
	}
	c.slots <- struct{}{}
	c.inflight.Add(1)
	c.mu.Lock()
	if c.open == g {
		c.open = nil
	}
	members := g.members
	c.mu.Unlock()
	defer func() {
		c.inflight.Add(-1)
		<-c.slots
	}()
	defer func() {
		// A decision that panics (a bug) rolls its group back: every
		// member not yet answered is decided on its own, where only the
		// one that panics fails.
		if v := recover(); v != nil {
			c.log.Error("a group's decision failed; its requests are decided one by one",
				"panic", iso.MaskPANs(fmt.Sprint(v)), "stack", string(debug.Stack()))
			for _, m := range members {
				select {
				case <-m.done:
				default:
					finish(m, Answer{}, nil, true)
				}
			}
		}
	}()
	c.m.groupSize.Observe(float64(len(members)))
	c.commit(members)
}

// errMemberGone is a group that must be tried again without a member
// whose deadline passed before the commit.
var errMemberGone = errors.New("a member's deadline passed before its group committed")

// commit decides members in one transaction and answers each: with its
// committed answer, or by asking it to be decided alone.
func (c *committer) commit(members []*member) {
	live := members[:0:0]
	for _, m := range members {
		if err := m.ctx.Err(); err != nil {
			finish(m, Answer{}, err, false) // as a transaction that never began
			continue
		}
		live = append(live, m)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), latestDeadline(live))
	defer cancel()
	var gone []*member
	start := time.Now()
	err := c.l.Do(ctx, func(tx *ledger.Tx) error {
		gone = gone[:0]
		return c.decideGroup(ctx, tx, live, &gone)
	})
	result := "committed"
	if err != nil {
		result = "rolled_back"
	}
	c.m.ledgerDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
		for _, m := range live {
			if !m.alone {
				finish(m, Answer{resp: m.resp, code: responseCode(m.o.err), err: m.o.err, seq: m.seq, raised: m.o.raised}, nil, false)
			} else {
				finish(m, Answer{}, nil, true)
			}
		}
	case errors.Is(err, errMemberGone):
		for _, m := range gone {
			finish(m, Answer{}, m.ctx.Err(), false)
		}
		c.commit(without(live, gone))
	case errors.Is(err, ledger.ErrCommitUnknown):
		// What the group wrote may stand: each it wrote is answered with
		// what the ledger holds (nothing, if it cannot say), never decided
		// again, all of them at once; the others wrote nothing, and go
		// first.
		var wg sync.WaitGroup
		for _, m := range live {
			if !m.saved {
				finish(m, Answer{}, nil, true)
			}
		}
		for _, m := range live {
			if m.saved {
				wg.Go(func() {
					rep, err := c.unknown(m.ctx, m.f, m.r)
					finish(m, rep, err, false)
				})
			}
		}
		wg.Wait()
	case len(live) == 1, !ledger.Refused(err):
		// Each is decided on its own: one the ledger refuses, as it would
		// have been alone; each waiting only for its own locks when one
		// the group needed was not granted in time. A ledger that cannot
		// be reached is not asked again for every half of the group.
		for _, m := range live {
			finish(m, Answer{}, nil, true)
		}
	default:
		// The server refused a statement: the request that caused it
		// fails alone, once the halves without it have committed.
		half := len(live) / 2
		c.commit(live[:half])
		c.commit(live[half:])
	}
}

// decideGroup looks members up, decides those it can and saves them. The
// others are marked alone. Members whose deadline has passed meanwhile
// are put in gone, and the transaction is rolled back.
func (c *committer) decideGroup(ctx context.Context, tx *ledger.Tx, members []*member, gone *[]*member) error {
	finds := make([]ledger.Find, len(members))
	for i, m := range members {
		finds[i] = m.f
		m.alone, m.need, m.saved = false, nil, false
	}
	lks, err := tx.LookupGroup(ctx, finds)
	if errors.Is(err, ledger.ErrNotGroupable) {
		for _, m := range members {
			m.alone = true
		}
		return nil
	}
	if err != nil {
		return err
	}
	var (
		recs    []ledger.Record
		effects [][]ledger.Effect
		saved   []*member
		// untrusted are cards a decision may have changed without being
		// saved: their later members are decided alone.
		untrusted map[*ledger.Card]bool
	)
	for i, m := range members {
		lk := lks[i]
		distrust := func() {
			if lk.Card != nil {
				if untrusted == nil {
					untrusted = make(map[*ledger.Card]bool)
				}
				untrusted[lk.Card] = true
			}
		}
		if lk.Prior != nil || lk.Waiting != 0 || (lk.Card != nil && untrusted[lk.Card]) {
			m.alone = true // a repeat, or one a reversal waits for: the card's later ones follow it
			distrust()
			continue
		}
		o, rec, eff, err := m.decide(lk)
		if err == nil {
			m.resp, err = m.build(o)
		}
		if err != nil {
			m.alone = true // a shortfall to redeem, say
			if need := (*needsRedemption)(nil); errors.As(err, &need) {
				need.seen = noPrior
				m.need = need
			}
			distrust()
			continue
		}
		resp := m.resp
		rec.Response = resp
		m.o, m.resp, m.saved = o, resp, true
		recs, effects, saved = append(recs, rec), append(effects, eff), append(saved, m)
	}
	if len(saved) > 0 {
		ids, err := tx.SaveGroup(ctx, recs, effects)
		if err != nil {
			return err
		}
		for i, m := range saved {
			m.seq = ids[i]
		}
	}
	for _, m := range saved {
		if m.ctx.Err() != nil {
			*gone = append(*gone, m)
		}
	}
	if len(*gone) > 0 {
		return errMemberGone
	}
	return nil
}

// latestDeadline is how long the group's transaction may take: until the
// last of its members' deadlines (members whose deadline passes first are
// taken out before the commit).
func latestDeadline(ms []*member) time.Duration {
	var last time.Time
	for _, m := range ms {
		d, ok := m.ctx.Deadline()
		if !ok {
			return 10 * time.Second
		}
		if d.After(last) {
			last = d
		}
	}
	return time.Until(last)
}

func without(ms, drop []*member) []*member {
	out := make([]*member, 0, len(ms))
	for _, m := range ms {
		keep := true
		for _, d := range drop {
			if m == d {
				keep = false
				break
			}
		}
		if keep {
			out = append(out, m)
		}
	}
	return out
}

func finish(m *member, rep Answer, err error, alone bool) {
	m.rep, m.err, m.alone = rep, err, alone
	close(m.done)
}

// turns keeps requests for one card one after another, in the order they
// arrived; requests for different cards go on side by side.
type turns struct {
	mu    sync.Mutex
	cards map[string]*cardTurns // by PAN
}

// cardTurns are one card's requests in the pipeline.
type cardTurns struct {
	last chan struct{}  // closed when the newest request's turn ends
	keys map[string]int // the requests' keys (Key.Digest), counted
	n    int            // requests holding or waiting for a turn
	// answers are what requests with copies behind them were answered,
	// by key, until the last copy has had its turn.
	answers map[string]*stored
}

// stored is a request's answer as the ledger keeps it, for its copies.
type stored struct {
	resp, fingerprint []byte
	code              string
	seq               int64
}

// turn is one request's place in its card's order.
type turn struct {
	t          *turns
	ct         *cardTurns
	pan, key   string
	mine, prev chan struct{}
	// ahead: a request with the same key came before it and was still in
	// the pipeline; joined, once its turn has come, is that request's
	// answer if the ledger kept one.
	ahead  bool
	joined *stored
}

// take waits for the turns of the card's earlier requests to end and
// returns this one's, to end with its answer. A request whose deadline
// passes first gives up its place (err, with a turn that only says
// whether it was ahead), and the next still waits for the ones before it.
func (t *turns) take(ctx context.Context, pan, key string) (*turn, error) {
	tu := &turn{t: t, pan: pan, key: key, mine: make(chan struct{})}
	t.mu.Lock()
	if t.cards == nil {
		t.cards = make(map[string]*cardTurns)
	}
	ct := t.cards[pan]
	if ct == nil {
		ct = &cardTurns{keys: make(map[string]int, 1)}
		t.cards[pan] = ct
	}
	tu.ct, tu.prev = ct, ct.last
	ct.last = tu.mine
	tu.ahead = ct.keys[key] > 0
	ct.keys[key]++
	ct.n++
	t.mu.Unlock()
	if tu.prev != nil {
		select {
		case <-tu.prev:
		case <-ctx.Done():
			// Its place stays until the ones before it end (the next
			// waits for them), but not its key: a copy behind it has
			// nothing of its to join.
			t.mu.Lock()
			tu.dropKey()
			t.mu.Unlock()
			go func() {
				<-tu.prev
				t.mu.Lock()
				tu.leave()
				t.mu.Unlock()
				close(tu.mine)
			}()
			return &turn{ahead: tu.ahead}, ctx.Err()
		}
	}
	if tu.ahead {
		t.mu.Lock()
		tu.joined = ct.answers[key]
		t.mu.Unlock()
	}
	return tu, nil
}

// end ends the turn of a request answered a (fingerprint: its content's):
// a copy of it behind gets that answer if the ledger kept it.
func (tu *turn) end(a Answer, fingerprint []byte) {
	t := tu.t
	t.mu.Lock()
	if tu.ct.keys[tu.key] > 1 && a.seq != 0 && a.resp != nil {
		if tu.ct.answers == nil {
			tu.ct.answers = make(map[string]*stored, 1)
		}
		tu.ct.answers[tu.key] = &stored{resp: a.resp, fingerprint: fingerprint, code: a.code, seq: a.seq}
	}
	tu.dropKey()
	tu.leave()
	t.mu.Unlock()
	close(tu.mine)
}

// dropKey and leave take the request out of its card's counts; the
// turns' mutex is held.
func (tu *turn) dropKey() {
	ct := tu.ct
	if ct.keys[tu.key]--; ct.keys[tu.key] == 0 {
		delete(ct.keys, tu.key)
		delete(ct.answers, tu.key)
	}
}

func (tu *turn) leave() {
	if tu.ct.n--; tu.ct.n == 0 {
		delete(tu.t.cards, tu.pan)
	}
}
