// Package ledger posts balanced double-entry transfers to PostgreSQL.
//
// Every movement of money is a transfer from one account to another inside
// one database transaction; the schema's triggers and constraints keep each
// card account's stored balance equal to its transfers and refuse a negative
// available balance, a reused idempotency key and a second reversal. A Tx
// reads and locks what a decision needs; Card computes the transfers a
// decision implies; Save writes them with the response that will be sent.
package ledger
