// Package iso reads and writes the ISO 8583 messages banks send to Goldcard.
//
// A Dialect is a moov-io/iso8583 message spec loaded from JSON plus a
// length-header kind; the shipped dialects live in dialects/. ParseRequest
// maps an unpacked message to a typed Request, and Respond builds the
// matching response that echoes the request's identifying fields.
// Nothing here knows about cards, money or the ledger.
package iso
