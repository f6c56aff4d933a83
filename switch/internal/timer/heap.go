package timer

import (
	"container/heap"
	"time"
)

// id names a task.
type id struct{ kind, key string }

type entry struct {
	id
	due time.Time
}

// schedule is a min-heap of tasks by due time, with the ids it holds: an
// id's due time while it waits in the heap, the zero time once popped (its
// run not finished). A task made due earlier is pushed again; the entry
// left at the old time is stale and skipped.
type schedule struct {
	h   entries
	ids map[id]time.Time
}

type entries []entry

func (e entries) Len() int           { return len(e) }
func (e entries) Less(i, j int) bool { return e[i].due.Before(e[j].due) }
func (e entries) Swap(i, j int)      { e[i], e[j] = e[j], e[i] }
func (e *entries) Push(x any)        { *e = append(*e, x.(entry)) }
func (e *entries) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}

func newSchedule() *schedule { return &schedule{ids: map[id]time.Time{}} }

// add puts a task in unless it is there already, due no later, or has been
// popped and not forgotten.
func (s *schedule) add(i id, due time.Time) bool {
	if d, ok := s.ids[i]; ok && (d.IsZero() || !due.Before(d)) {
		return false
	}
	s.ids[i] = due
	heap.Push(&s.h, entry{i, due})
	return true
}

// next returns the earliest due time, if any.
func (s *schedule) next() (time.Time, bool) {
	if len(s.h) == 0 {
		return time.Time{}, false
	}
	return s.h[0].due, true
}

// popDue removes and returns the tasks due by t.
func (s *schedule) popDue(t time.Time) []entry {
	var out []entry
	for len(s.h) > 0 && !s.h[0].due.After(t) {
		e := heap.Pop(&s.h).(entry)
		if d, ok := s.ids[e.id]; ok && d.Equal(e.due) {
			s.ids[e.id] = time.Time{}
			out = append(out, e)
		}
	}
	return out
}

// forget lets id be added again.
func (s *schedule) forget(i id) { delete(s.ids, i) }
