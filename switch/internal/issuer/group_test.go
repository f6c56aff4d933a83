package issuer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/ledger/ledgertest"
)

// groupCase is one request of a group: what it asks, and what it must get.
type groupCase struct {
	name   string
	pan    string
	amount int64
	mti    string
	proc   string
	ctx    context.Context
	// want is the response code of one decided in the group; alone, that
	// it is left to be decided on its own; err, that it failed unstored.
	want  string
	alone bool
	err   bool
}

// groupRig makes the members of groups for one issuer with group commit.
type groupRig struct {
	p    *Issuer
	d    *iso.Dialect
	bank *config.Bank
	lim  config.Limits
}

func newGroupRig(t *testing.T, l *ledger.Ledger) *groupRig {
	t.Helper()
	d, err := iso.Builtin(iso.DefaultDialect)
	if err != nil {
		t.Fatal(err)
	}
	p := New(Options{Ledger: l, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), GroupCommit: &GroupCommit{}})
	return &groupRig{p: p, d: d, bank: config.DefaultBank("127.0.0.1:0"), lim: config.DefaultLimits()}
}

// member is a request of mti and DE3 proc for amount on pan, its STAN and
// RRN made of stan; build, when set, stands in for packing its response.
func (g *groupRig) member(t *testing.T, ctx context.Context, mti, proc, pan string, amount int64, stan int, build func(decision) ([]byte, error)) *member {
	t.Helper()
	msg := message(t, g.d, mti, map[int]string{
		2: pan, 3: proc, 4: fmt.Sprintf("%012d", amount), 7: "1201101010", 11: fmt.Sprintf("%06d", stan),
		12: "101010", 13: "1201", 32: "1234", 37: fmt.Sprintf("%012d", stan), 41: "ATM00001", 49: "156",
	})
	r, err := iso.ParseRequest(msg)
	if err != nil {
		t.Fatal(err)
	}
	if build == nil {
		body, err := msg.Pack()
		if err != nil {
			t.Fatal(err)
		}
		build = func(o decision) ([]byte, error) { return buildResponse(g.d, msg, body, o, g.lim) }
	}
	return g.p.newMember(ctx, g.bank, r, g.lim, build)
}

// TestGroupCommit decides a group of requests in one transaction, against
// a real PostgreSQL: approvals, declines and unknown cards commit
// together; a request the database refuses is left to be decided alone,
// and its neighbours commit without it; a repeat and a shortfall are left
// to the single path; a request whose deadline has passed is not stored.
func TestGroupCommit(t *testing.T) {
	l, pool := ledgertest.New(t)
	ctx := context.Background()
	// A request the database refuses: the neighbours must not fail with it.
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION refuse_4242() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'check_violation'; END $$;
		CREATE TRIGGER requests_refuse_4242 BEFORE INSERT ON requests FOR EACH ROW
			WHEN (NEW.amount = 4242) EXECUTE FUNCTION refuse_4242()`); err != nil {
		t.Fatal(err)
	}
	pans := make([]string, 8)
	for i := range pans {
		pans[i] = fmt.Sprintf("62284800000200%02d", i)
		if _, err := l.CreateCard(ctx, ledger.NewCard{PAN: pans[i], Currency: "156", Balance: 10000, FundBalance: 100000}); err != nil {
			t.Fatal(err)
		}
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	g := newGroupRig(t, l)
	p := g.p
	p.redeemer = &redeemer{} // shortfalls are redeemed (by the single path, never run here)
	stan := 0
	newMember := func(c groupCase) *member {
		stan++
		mti, proc, cctx := c.mti, c.proc, c.ctx
		if mti == "" {
			mti = "0200"
		}
		if proc == "" {
			proc = "000000"
		}
		if cctx == nil {
			cctx = ctx
		}
		return g.member(t, cctx, mti, proc, c.pan, c.amount, stan, nil)
	}
	// A request already answered: its repeat is for the single path.
	first := newMember(groupCase{pan: pans[5], amount: 100})
	p.group.commit([]*member{first})
	if first.err != nil || first.alone || first.rep.code != "00" {
		t.Fatalf("a group of one: %+v, %v, alone %v", first.rep, first.err, first.alone)
	}
	cases := []groupCase{
		{name: "debit", pan: pans[0], amount: 1000, want: "00"},
		{name: "deposit", pan: pans[1], amount: 500, proc: "210000", want: "00"},
		{name: "refused by the database", pan: pans[2], amount: 4242, alone: true},
		{name: "insufficient, but the fund covers it", pan: pans[3], amount: 20000, alone: true},
		{name: "unknown card", pan: "6228489999999999", amount: 100, want: "14"},
		{name: "authorisation", pan: pans[4], amount: 3000, mti: "0100", want: "00"},
		{name: "deadline passed", pan: pans[6], amount: 100, ctx: done, err: true},
		{name: "debit over everything", pan: pans[7], amount: 1000000, want: "51"},
	}
	members := make([]*member, 0, len(cases)+1)
	for _, c := range cases {
		members = append(members, newMember(c))
	}
	repeat := *first
	repeat.done = make(chan struct{})
	members = append(members, &repeat)
	var wg sync.WaitGroup
	wg.Go(func() { p.group.commit(members) })
	wg.Wait()
	for i, c := range cases {
		m := members[i]
		<-m.done
		switch {
		case c.err:
			if m.err == nil || m.alone {
				t.Errorf("%s: %+v alone %v; want an error", c.name, m.rep, m.alone)
			}
		case c.alone:
			if !m.alone {
				t.Errorf("%s: decided in the group (%q, %v); want it left alone", c.name, m.rep.code, m.err)
			}
		case m.alone || m.err != nil || m.rep.code != c.want || m.rep.seq == 0:
			t.Errorf("%s: %q seq %d err %v alone %v; want %s", c.name, m.rep.code, m.rep.seq, m.err, m.alone, c.want)
		}
	}
	if !repeat.alone {
		t.Error("a repeat was decided in the group")
	}
	for pan, want := range map[string]int64{pans[0]: 9000, pans[1]: 10500, pans[2]: 10000, pans[3]: 10000, pans[4]: 7000, pans[5]: 9900, pans[6]: 10000, pans[7]: 10000} {
		c, err := l.Card(ctx, pan, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if c.Available() != want {
			t.Errorf("card %s: available %d, want %d", iso.MaskPAN(pan), c.Available(), want)
		}
	}
	var stored int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM requests`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != 6 { // the first, and the five decided in the group
		t.Errorf("%d requests stored, want 6", stored)
	}
	if err := l.Audit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestGroupPanic: a decision that panics rolls its group back and leaves
// every member to be decided on its own; nothing stays locked.
func TestGroupPanic(t *testing.T) {
	l, _ := ledgertest.New(t)
	ctx := context.Background()
	pans := []string{"6228480000030001", "6228480000030002"}
	for _, pan := range pans {
		if _, err := l.CreateCard(ctx, ledger.NewCard{PAN: pan, Currency: "156", Balance: 10000}); err != nil {
			t.Fatal(err)
		}
	}
	g := newGroupRig(t, l)
	p := g.p
	var members []*member
	for i, pan := range pans {
		var build func(decision) ([]byte, error)
		if i == 0 {
			build = func(decision) ([]byte, error) { panic("a bug in building the response") }
		}
		members = append(members, g.member(t, ctx, "0200", "000000", pan, 100, 900+i, build))
	}
	p.group.lead(&group{members: members, full: make(chan struct{})})
	for i, m := range members {
		<-m.done
		if !m.alone {
			t.Errorf("member %d: %+v, %v; want it decided on its own", i, m.rep, m.err)
		}
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := l.Do(lctx, func(tx *ledger.Tx) error {
		_, err := tx.LockCard(lctx, pans[1], time.Time{})
		return err
	}); err != nil {
		t.Fatalf("the card of a member of the group that panicked: %v", err)
	}
}

// TestGroupCommitUnknown: a group whose commit never comes back answers
// each request it wrote with what the ledger holds once it can say, and
// never decides it again.
func TestGroupCommitUnknown(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the ledger's commit timeout")
	}
	t.Parallel()
	l, pool := ledgertest.New(t)
	ctx := context.Background()
	const pan = "6228480000040001"
	if _, err := l.CreateCard(ctx, ledger.NewCard{PAN: pan, Currency: "156", Balance: 10000}); err != nil {
		t.Fatal(err)
	}
	// The commit outlasts the ledger's wait for it, then goes through.
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN PERFORM pg_sleep(11); RETURN NULL; END $$;
		CREATE CONSTRAINT TRIGGER requests_slow_commit AFTER INSERT ON requests
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()`); err != nil {
		t.Fatal(err)
	}
	g := newGroupRig(t, l)
	mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m := g.member(t, mctx, "0200", "000000", pan, 777, 777, nil)
	p := g.p
	p.group.commit([]*member{m})
	<-m.done
	// Whichever way the commit went, once the database is done with it
	// the answer must say what it holds.
	for {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling the database, not timing it
	}
	c, err := l.Card(ctx, pan, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if m.alone {
		t.Fatal("a request whose group's commit was lost was left to be decided again")
	}
	switch committed := c.Cash == 10000-777; {
	case committed && (m.err != nil || m.rep.code != "00"):
		t.Fatalf("a debit committed after its commit's outcome was lost was answered %q (%v); want its stored 00", m.rep.code, m.err)
	case !committed && m.rep.code == "00":
		t.Fatal("a debit that did not commit was approved")
	}
	if err := l.Audit(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTurns: a card's requests take turns in arrival order; one that gives
// up waiting keeps the order of those behind it; a copy behind its
// original is told so, and gets the original's stored answer, unless the
// original gave up; nothing is left over.
func TestTurns(t *testing.T) {
	var tt turns
	ctx := context.Background()
	queued := func(n int) {
		for {
			tt.mu.Lock()
			got := 0
			if ct := tt.cards["p"]; ct != nil {
				got = ct.n
			}
			tt.mu.Unlock()
			if got == n {
				return
			}
			time.Sleep(time.Millisecond) // until the request is queued
		}
	}
	a, err := tt.take(ctx, "p", "a")
	if err != nil || a.ahead {
		t.Fatalf("first: %+v, %v", a, err)
	}
	// B gives up while A holds the card.
	gone, cancel := context.WithCancel(ctx)
	got := make(chan error, 1)
	go func() {
		_, err := tt.take(gone, "p", "b")
		got <- err
	}()
	queued(2)
	cancel()
	if err := <-got; err == nil {
		t.Fatal("a request that gave up waiting got its turn")
	}
	// C, a copy of B, queued behind A and the place B left: not ahead of
	// anything of its own, and its turn comes only once A ends.
	turnC := make(chan *turn, 1)
	go func() {
		c, err := tt.take(ctx, "p", "b")
		if err != nil {
			t.Error(err)
			return
		}
		c.end(Answer{}, nil)
		turnC <- c
	}()
	queued(3)
	// D, a copy of A, queued behind it.
	turnD := make(chan *turn, 1)
	go func() {
		d, err := tt.take(ctx, "p", "a")
		if err != nil {
			t.Error(err)
			return
		}
		d.end(Answer{}, nil)
		turnD <- d
	}()
	queued(4)
	select {
	case <-turnC:
		t.Fatal("a request got its turn before the one ahead of it ended")
	case <-time.After(50 * time.Millisecond): // a window for a wrong turn to show, not a wait for a right one
	}
	a.end(Answer{resp: []byte("0210"), code: "00", seq: 7}, []byte("fp"))
	if c := <-turnC; c.ahead || c.joined != nil {
		t.Errorf("a copy of a request that gave up: ahead %v, joined %+v", c.ahead, c.joined)
	}
	if d := <-turnD; !d.ahead || d.joined == nil || d.joined.seq != 7 || string(d.joined.fingerprint) != "fp" {
		t.Errorf("a copy queued behind its original: ahead %v, joined %+v", d.ahead, d.joined)
	}
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if len(tt.cards) != 0 {
		t.Errorf("turns left over: %+v", tt.cards)
	}
}
