// Package timer runs one-shot tasks at their due time, durably: tasks are
// rows in PostgreSQL, fired by whichever instance leads an etcd election,
// from an in-memory schedule, at least once each. A task is claimed before
// it runs, so no two instances run it at once, and handlers must be
// idempotent: a crash or a change of leader fires a task again.
package timer
