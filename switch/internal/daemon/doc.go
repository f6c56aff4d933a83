// Package daemon is the running switch: built from complete Parts (or run
// from goldcard serve's Options), it wires the issuer behind the bank
// links, puts each config the config center pushes into effect, runs the
// timer's tasks while it leads, probes its dependencies and serves the
// admin API, and drains on shutdown.
package daemon
