// Package link runs a switch's bank connections: a listener per address
// the config's banks use (shared by banks of one wire format, and by the
// switches of one identity on a host), framing and its limits, TLS, MACs,
// sign-on, and routing each message to its bank. It hands every request to
// a Handler and writes what comes back; it knows nothing of the ledger or
// the fund.
package link
