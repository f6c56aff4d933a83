// Package config is the switch's configuration: banks, dialects, limits.
// A Snapshot is immutable; a Store hands out the current one, and a new
// one replaces it whole, so a message reads one consistent snapshot.
package config
