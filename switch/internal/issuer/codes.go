package issuer

import (
	"context"
	"errors"

	"github.com/goldcard/goldcard/iso"
	"github.com/goldcard/goldcard/ledger"
	"github.com/goldcard/goldcard/locks"
)

// ErrUnavailable is work the issuer cannot do now: a dependency (the
// fund company, etcd, the ledger) did not answer in time (91).
var ErrUnavailable = errors.New("issuer unavailable")

// ErrNoFund is a redemption asked of an issuer built without a fund
// company or card locks.
var ErrNoFund = errors.New("this switch has no fund company configured")

// Reasons a request is declined, beyond the ledger's own errors.
var (
	errInvalidTransaction = errors.New("transaction not supported for this message")
	errInvalidAmount      = errors.New("invalid amount")
	errWrongCurrency      = errors.New("currency is not the card's")
	errExpired            = errors.New("card expired")
	errBlocked            = errors.New("card blocked")
	errKeyReused          = errors.New("idempotency key reused for different content")
	errReversedBefore     = errors.New("original arrived after its reversal")
	errOverQuota          = errors.New("instant-redemption quota exceeded")
	errOverTxnLimit       = errors.New("over the per-transaction limit")
	errDeadline           = errors.New("no answer before the deadline")
)

// Response codes (DE39).
const (
	rcApproved           = "00"
	rcBadMAC             = "A0" // message authentication failed
	rcInvalidTransaction = "12"
	rcInvalidAmount      = "13"
	rcInvalidCard        = "14"
	rcFormatError        = "30"
	rcInsufficientFunds  = "51"
	rcExpired            = "54"
	rcNotPermitted       = "57"
	rcOverLimit          = "61"
	rcUnavailable        = "91"
	rcUnroutable         = "92"
	rcDuplicate          = "94"
	rcMalfunction        = "96"
)

// responseCode is the one place a decision becomes a response code.
func responseCode(err error) string {
	switch {
	case err == nil:
		return rcApproved
	case errors.Is(err, iso.ErrBadMAC), errors.Is(err, iso.ErrNoMAC):
		return rcBadMAC
	case errors.Is(err, iso.ErrFormat):
		return rcFormatError
	case errors.Is(err, ledger.ErrUnknownCard):
		return rcInvalidCard
	case errors.Is(err, ledger.ErrInsufficientFunds):
		return rcInsufficientFunds
	case errors.Is(err, errExpired):
		return rcExpired
	case errors.Is(err, errBlocked):
		return rcNotPermitted
	case errors.Is(err, errOverQuota), errors.Is(err, ledger.ErrQuotaExceeded), errors.Is(err, errOverTxnLimit):
		return rcOverLimit
	case errors.Is(err, errInvalidAmount), errors.Is(err, errWrongCurrency):
		return rcInvalidAmount
	case errors.Is(err, errInvalidTransaction), errors.Is(err, errReversedBefore):
		return rcInvalidTransaction
	case errors.Is(err, errKeyReused):
		return rcDuplicate
	case errors.Is(err, iso.ErrUnroutable):
		return rcUnroutable
	case errors.Is(err, ErrUnavailable), errors.Is(err, iso.ErrUnavailable), errors.Is(err, errDeadline), errors.Is(err, locks.ErrUnavailable),
		errors.Is(err, ledger.ErrFenced), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return rcUnavailable
	}
	return rcMalfunction
}
