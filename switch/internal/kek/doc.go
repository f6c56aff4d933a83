// Package kek holds the key-encryption keys a switch is given at start,
// from a file or the environment, and wraps and unwraps the ledger's data
// keys and the banks' MAC keys under them. A deployment with an HSM or a
// cloud KMS puts a client of it behind the same two calls instead.
package kek
