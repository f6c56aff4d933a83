// Package switchtest runs switches for tests: the goldcard binary (built
// once per test process, removed by Main) on a fresh database, or a switch
// in the test's own process; banks connected to them, with the ISO library
// or raw bytes; and the waits and checks the tests share.
package switchtest
