// Package locks runs work that one process at a time may do: etcd-backed
// mutexes whose lock revision is a fencing token, and the embedded etcd
// a lone switch runs by default.
//
// A process holds one etcd session (a lease with a short TTL); its locks
// are lost together when the lease is, and Lock.Done says so. Callers
// carry the token into every write made under the lock, so that a holder
// that lost its lock without noticing is refused by the database.
package locks
