package fund

import (
	"context"
	"errors"
	"time"
	_ "time/tzdata" // the quota day is Asia/Shanghai's wherever the switch runs
)

// State is where an order stands at the fund company.
type State string

// Order states.
const (
	Pending   State = "pending"
	Confirmed State = "confirmed"
	Failed    State = "failed"
)

// Order is a redemption or subscription sent to the fund company. Its ID
// makes it idempotent: sending it again returns the first one's fate.
type Order struct {
	ID       string `json:"order_id"`
	Account  string `json:"account"` // the card's fund account, never its PAN
	Amount   int64  `json:"amount"`  // minor units; NAV is 1.00
	Currency string `json:"currency"`
}

// Status is an order's state as the fund company reports it.
type Status struct {
	OrderID string `json:"order_id"`
	State   State  `json:"state"`
	Reason  string `json:"reason,omitempty"`
}

// ErrUnknownOrder is returned by a status query for an order the fund
// company never received; it is safe to send again.
var ErrUnknownOrder = errors.New("fund: order unknown to the fund company")

// Provider is the fund company. Redeem and Subscribe return an error when
// the outcome is unknown (no answer in time, the link failed): the order
// may or may not exist, and its status must be asked later.
type Provider interface {
	Redeem(ctx context.Context, o Order) (Status, error)
	RedemptionStatus(ctx context.Context, id string) (Status, error)
	Subscribe(ctx context.Context, o Order) (Status, error)
	SubscriptionStatus(ctx context.Context, id string) (Status, error)
}

// Shanghai is the fund's time zone: its days, cut-offs and quotas.
var Shanghai = mustZone("Asia/Shanghai")

func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err) // time/tzdata is linked in
	}
	return loc
}

// Day is the quota day of t: its calendar date in Shanghai, as midnight UTC.
func Day(t time.Time) time.Time {
	y, m, d := t.In(Shanghai).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
