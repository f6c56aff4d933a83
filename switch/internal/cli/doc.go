// Package cli holds the conventions every goldcard command keeps: a command
// line it cannot run is a UsageError and exits 2, positional arguments are
// checked the same way, logs go to stderr as text or JSON, --db defaults to
// $GOLDCARD_DB, and the database and etcd are reached as serve reaches them.
package cli
