package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/switch/internal/admin"
	"github.com/goldcard/goldcard/switch/internal/client"
	"github.com/goldcard/goldcard/switch/internal/timer"
)

// taskReseal seals rows again under the data key in use; key: that key's
// id.
const taskReseal = "keys.reseal"

// Resealing goes in batches of resealBatch rows, resealPause apart, for
// at most resealRun a run: debits keep most of the database.
const (
	resealBatch = 500
	resealPause = 5 * time.Millisecond
	resealRun   = 30 * time.Second
)

// reseal runs the ledger's Reseal until no row is left, or for resealRun
// and then again at once.
func (s *Switch) reseal(ctx context.Context, t timer.Task) error {
	until := time.Now().Add(resealRun)
	busy := 100 * time.Millisecond
	for {
		r, err := s.ledger.Reseal(ctx, resealBatch)
		if errors.Is(err, ledger.ErrBusy) {
			// Requests (or a long transaction) held what it needed: they
			// go first, and it waits longer each time they do.
			if time.Now().Add(busy).After(until) {
				return timer.Continue(busy, err.Error())
			}
			if err := pause(ctx, busy); err != nil {
				return err
			}
			busy = min(2*busy, time.Minute)
			continue
		}
		if err != nil {
			return err
		}
		busy = 100 * time.Millisecond
		s.m.resealed.Add(float64(r.Changed))
		if r.Done {
			s.log.Info("every card and request is sealed under the data key in use", "key", r.Key)
			return nil
		}
		if time.Now().After(until) {
			return timer.Continue(0, fmt.Sprintf("sealed under data key %d: cards to id %d, requests to id %d", r.Key, r.Cards, r.Requests))
		}
		if err := pause(ctx, resealPause); err != nil {
			return err
		}
	}
}

// pause waits d, or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// keyAdmin is the admin API's goldcard keys: the ledger's data keys, the
// config center's wrapped MAC keys, and the switches that must follow.
type keyAdmin struct{ s *Switch }

// keysConfigTimeout bounds the wait for every switch to report a new data
// key.
const keysConfigTimeout = 5 * time.Second

func (k keyAdmin) Status(ctx context.Context) (admin.KeyStatus, error) {
	kek, keys, err := k.s.ledger.KeyStatus(ctx)
	if err != nil {
		return admin.KeyStatus{}, err
	}
	st := admin.KeyStatus{KEK: kek, Keys: keys}
	// The job sealing rows under the key in use, as the timer has it.
	tasks, err := timer.List(ctx, k.s.pool, taskReseal, "", 1000)
	for i := range tasks {
		if tasks[i].Key == strconv.Itoa(int(k.s.ledger.DataKeyInUse())) {
			st.Job = &tasks[i]
		}
	}
	return st, err
}

// everyoneHolds refuses what would wrap a key under this switch's KEK
// while a live switch does not hold it: that switch could not open it.
func (s *Switch) everyoneHolds(ctx context.Context) ([]config.Report, error) {
	if s.etcd == nil {
		return nil, nil
	}
	ictx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	live, _, err := config.Instances(ictx, s.etcd, s.prefix)
	if err != nil {
		return nil, &admin.Refusal{Status: http.StatusServiceUnavailable,
			Reason: "the config center does not answer, so which KEKs the switches hold is not known: nothing changed (" + err.Error() + ")"}
	}
	if ok, who := config.Holds(live, s.kek.ID()); !ok {
		return nil, &admin.Refusal{Status: http.StatusConflict, Reason: who + ": give every switch this KEK first (and restart them), then try again"}
	}
	return live, nil
}

func (k keyAdmin) Rotate(ctx context.Context) (admin.KeyChange, error) {
	s := k.s
	live, err := s.everyoneHolds(ctx)
	if err != nil {
		return admin.KeyChange{}, err
	}
	id, err := s.ledger.RotateDataKey(ctx)
	if err != nil {
		return admin.KeyChange{}, err
	}
	s.log.Info("data key rotated: new rows are sealed under it", "key", id)
	out := admin.KeyChange{Key: id, Switches: []client.Applied{}}
	// Earlier rows are sealed again once the switches have said they
	// follow (or failed to): the job's last pass finds what a slow one
	// wrote meanwhile.
	defer func() {
		if _, err := s.timer.Schedule(context.WithoutCancel(ctx), taskReseal, strconv.Itoa(int(id)), s.now(), nil); err != nil {
			s.log.Error("scheduling the sealing of earlier rows under the new data key", "key", id, "err", err)
		}
	}()
	if s.etcd == nil {
		return out, nil
	}
	value, _ := json.Marshal(config.Keys{DataKey: id})
	for {
		_, rev, err := config.Read(ctx, s.etcd, s.prefix)
		if err != nil {
			return out, fmt.Errorf("reading the config center: %w", err)
		}
		start := time.Now()
		out.Revision, err = config.Write(ctx, s.etcd, s.prefix, config.KeyKeys, value, rev)
		if errors.Is(err, config.ErrChanged) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("telling the switches: %w", err)
		}
		out.Switches, err = client.WaitApplied(ctx, s.etcd, s.prefix, live, out.Revision, start, keysConfigTimeout)
		return out, err
	}
}

func (k keyAdmin) Rewrap(ctx context.Context) (admin.KeyRewrap, error) {
	s := k.s
	if _, err := s.everyoneHolds(ctx); err != nil {
		return admin.KeyRewrap{}, err
	}
	n, err := s.ledger.RewrapKeys(ctx)
	if err != nil {
		return admin.KeyRewrap{}, err
	}
	out := admin.KeyRewrap{KEK: s.kek.ID(), DataKeys: n, Banks: []string{}}
	s.log.Info("data keys rewrapped under the current KEK", "kek", s.kek.ID(), "keys", n)
	if s.etcd == nil {
		return out, nil
	}
	banks, rev, err := config.WrapStored(ctx, s.etcd, s.prefix, s.kek, true)
	if err != nil {
		return out, fmt.Errorf("rewrapping the banks' MAC keys: %w", err)
	}
	out.Revision = rev
	if banks != nil {
		out.Banks = banks
	}
	return out, nil
}

// useDataKey moves the ledger to the data key the config names. One the
// database lacks (a database restored from before a rotation) leaves it
// on the newest it has, with a warning.
func (s *Switch) useDataKey(cur *config.Snapshot) error {
	if cur.Keys.DataKey == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.base, 5*time.Second)
	defer cancel()
	if err := s.ledger.UseDataKey(ctx, cur.Keys.DataKey); err != nil {
		s.log.Warn("the config's data key is not in use here: new rows are sealed under the newest key this database has",
			"data_key", cur.Keys.DataKey, "err", err)
		return fmt.Errorf("data key %d: %w", cur.Keys.DataKey, err)
	}
	return nil
}

// ensureReseal makes sure rows under earlier keys (or stored before
// sealing) are being sealed under the data key in use, reviving its task
// if it ended (parked as dead, say) with work left.
func (s *Switch) ensureReseal(ctx context.Context) error {
	done, err := s.ledger.Sealed(ctx)
	if err != nil || done {
		return err
	}
	key := strconv.Itoa(int(s.ledger.DataKeyInUse()))
	made, err := s.timer.Schedule(ctx, taskReseal, key, s.now(), nil)
	if err == nil && !made {
		if revived, _ := s.timer.Revive(ctx, taskReseal, key); revived {
			s.log.Warn("the sealing of earlier rows had stopped with rows left: started again", "key", key)
		}
	}
	return err
}

// keepResealing makes sure, while this instance leads the timer and every
// few minutes, that rows left under an earlier key are being sealed again.
func (s *Switch) keepResealing(ctx context.Context) {
	for {
		if err := s.ensureReseal(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("scheduling the sealing of earlier rows", "err", err)
		}
		if pause(ctx, 5*time.Minute) != nil {
			return
		}
	}
}

// kekIDs are the check values of every KEK k holds, the current one first.
func kekIDs(k ledger.KEK) []string {
	if set, ok := k.(interface{ IDs() []string }); ok {
		return set.IDs()
	}
	return []string{k.ID()}
}

// recheckClear asks, while cards stored before PANs were sealed may
// remain, whether they still do, so that a switch that did not seal them
// stops sending their plain PANs to the database soon after.
func (s *Switch) recheckClear(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		plain, err := s.ledger.RecheckClear(ctx)
		if err == nil && !plain {
			return
		}
	}
}
