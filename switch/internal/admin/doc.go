// Package admin serves the switch's admin HTTP API: cards, orders, sweeps,
// exceptions, timer tasks, the config in effect, health and metrics, behind
// a bearer token or client certificates.
package admin
