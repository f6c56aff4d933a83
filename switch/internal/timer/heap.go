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

// schedule is a min-heap of tasks by due time, with the set of ids in it.
type schedule struct {
	h   entries
	ids map[id]struct{}
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

func newSchedule() *schedule { return &schedule{ids: map[id]struct{}{}} }

// add puts a task in unless it is there already.
func (s *schedule) add(i id, due time.Time) bool {
	if _, ok := s.ids[i]; ok {
		return false
	}
	s.ids[i] = struct{}{}
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
		out = append(out, heap.Pop(&s.h).(entry))
	}
	return out
}

// forget lets id be added again.
func (s *schedule) forget(i id) { delete(s.ids, i) }

func (s *schedule) len() int { return len(s.h) }
