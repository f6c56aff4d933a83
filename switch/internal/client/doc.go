// Package client is how the goldcard tools reach a running switch: as a
// bank on its ISO 8583 listeners, through its admin API with the
// environment's credentials, and through the config center in etcd the
// switches watch. It also reads and writes amounts as people type them.
package client
