package link

import (
	"context"
	"time"

	"github.com/moov-io/iso8583"

	"github.com/goldcard/goldcard/config"
	"github.com/goldcard/goldcard/iso"
)

// A Handler answers the requests links read (the issuer). R is its account
// of one request, which the link hands back once the response is written.
type Handler[R Result] interface {
	// Handle answers one routed request of bank's under ctx's deadline
	// and the limits of the config it arrived under. It returns the
	// response body, nil for no response.
	Handle(ctx context.Context, bank *config.Bank, d *iso.Dialect, lim config.Limits, msg *iso8583.Message, body []byte) ([]byte, R)
	// Refuse answers a message the link will not pass on; err says why,
	// wrapping iso.ErrFormat, iso.ErrBadMAC, iso.ErrNoMAC,
	// iso.ErrUnroutable or iso.ErrUnavailable. bank is the bank it was
	// routed to, nil when it was refused before routing. Nothing is
	// decided.
	Refuse(bank *config.Bank, d *iso.Dialect, msg *iso8583.Message, err error) ([]byte, R)
	// Failed accounts for a request whose handling panicked (err), of
	// which nothing more is known; it must not look at the request.
	Failed(err error) R
}

// Result is a handler's account of one request.
type Result interface {
	// Seq is the ledger's id of the request answered (0: none), for the
	// capture.
	Seq() int64
	// SignOn is +1 for an approved sign-on, -1 for a sign-off, else 0.
	SignOn() int
	// Answered counts and logs the request once its response is written
	// on bank's link (lost: the link went down first). A quiet one is
	// counted, not logged.
	Answered(bank string, arrival time.Time, lost, quiet bool)
}

// handler is a Handler of any Result.
type handler interface {
	Handle(ctx context.Context, bank *config.Bank, d *iso.Dialect, lim config.Limits, msg *iso8583.Message, body []byte) ([]byte, Result)
	Refuse(bank *config.Bank, d *iso.Dialect, msg *iso8583.Message, err error) ([]byte, Result)
	Failed(err error) Result
}

type anyResult[R Result] struct{ h Handler[R] }

func (a anyResult[R]) Handle(ctx context.Context, bank *config.Bank, d *iso.Dialect, lim config.Limits, msg *iso8583.Message, body []byte) ([]byte, Result) {
	return a.h.Handle(ctx, bank, d, lim, msg, body)
}

func (a anyResult[R]) Refuse(bank *config.Bank, d *iso.Dialect, msg *iso8583.Message, err error) ([]byte, Result) {
	return a.h.Refuse(bank, d, msg, err)
}

func (a anyResult[R]) Failed(err error) Result { return a.h.Failed(err) }
