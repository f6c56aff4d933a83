package ledger

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// Errors returned by the ledger.
var (
	ErrUnknownCard       = errors.New("ledger: unknown card")
	ErrCardExists        = errors.New("ledger: card exists")
	ErrInsufficientFunds = errors.New("ledger: insufficient funds")
	ErrInvalidCard       = errors.New("ledger: invalid card")
	// ErrCommitUnknown is a commit sent whose outcome never came back:
	// the transaction may or may not have committed.
	ErrCommitUnknown = errors.New("ledger: commit outcome unknown")
	// ErrBusy is work that gave way to requests holding the rows it
	// needs: it is to be tried again shortly.
	ErrBusy = errors.New("ledger: rows busy with requests")
)

// errStale means a row changed between being read and being written by
// a transaction that had to wait for it; the transaction is run again.
var errStale = errors.New("ledger: row changed while waiting for it")

// PostgreSQL error codes the ledger reacts to.
const (
	codeUniqueViolation      = "23505"
	codeCheckViolation       = "23514"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
	codeInvalidCatalogName   = "3D000"
	codeDuplicateDatabase    = "42P04"
	codeLockNotAvailable     = "55P03"
	codeDuplicateObject      = "42710"
)

func pgCode(err error) (code, constraint string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, pe.ConstraintName
	}
	return "", ""
}

func isCheckViolation(err error) bool {
	code, _ := pgCode(err)
	return code == codeCheckViolation
}

// retryable reports whether a transaction failed only because another one
// got there first: running it again will see that one's result.
func retryable(err error) bool {
	if errors.Is(err, errStale) {
		return true
	}
	code, constraint := pgCode(err)
	switch code {
	case codeSerializationFailure, codeDeadlockDetected:
		return true
	case codeUniqueViolation:
		return constraint == "requests_txn_key" || constraint == "requests_reverses_stands" || constraint == "holds_request_key"
	}
	return false
}

// Refused reports whether err is the database refusing what a statement
// asked (bad data, a constraint, a raised exception, a conflict): the
// transaction rolled back, and the same work without what caused it may
// succeed. A database shutting down, out of connections or unreachable,
// or a lock not granted in time, is not a refusal.
func Refused(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) != 5 {
		return false
	}
	switch pe.Code[:2] {
	case "22", "23", "40", "P0": // data, integrity, rollback, PL/pgSQL
		return true
	}
	return false
}
