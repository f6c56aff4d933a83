package ledger

import "time"

// Hold is an amount reserved on a card's cash account by an authorisation.
type Hold struct {
	ID        int64
	Amount    int64
	Remaining int64
	State     string // active, captured, released, expired
}

// Hold states.
const (
	HoldActive   = "active"
	HoldCaptured = "captured"
	HoldReleased = "released"
	HoldExpired  = "expired"
)

func (c *Card) transfer(kind string, debit, credit, amount int64) Effect {
	return transfer{kind: kind, debit: debit, credit: credit, currency: c.Currency, amount: amount}
}

// PlaceHold reserves amount of the card's available balance until expires.
func (c *Card) PlaceHold(amount int64, expires time.Time) (Effect, error) {
	if amount <= 0 || amount > c.Available() {
		return nil, ErrInsufficientFunds
	}
	c.Held += amount
	return placeHold{account: c.cashID, amount: amount, expires: expires}, nil
}

// Debit pays amount from the card's available balance to the bank.
func (c *Card) Debit(kind string, amount int64) ([]Effect, error) {
	if amount <= 0 || amount > c.Available() {
		return nil, ErrInsufficientFunds
	}
	c.Cash -= amount
	return []Effect{c.transfer(kind, c.cashID, c.settlementID, amount)}, nil
}

// ForceDebit pays amount to the bank whatever the card holds: an advice or
// a reversal of a credit cannot be refused. What the available balance
// does not cover is owed on the card's overdraft account.
func (c *Card) ForceDebit(kind string, amount int64) []Effect {
	if amount <= 0 {
		return nil
	}
	fromCash := min(amount, max(c.Cash-c.Held, 0))
	owed := amount - fromCash
	var effects []Effect
	if fromCash > 0 {
		effects = append(effects, c.transfer(kind, c.cashID, c.settlementID, fromCash))
		c.Cash -= fromCash
	}
	if owed > 0 {
		effects = append(effects, c.transfer(kind, c.overdraftID, c.settlementID, owed))
		c.Overdraft -= owed
	}
	return effects
}

// Credit pays amount from the bank to the card. What the card owes is
// repaid first.
func (c *Card) Credit(kind string, amount int64) []Effect {
	return c.credit(c.settlementID, kind, amount)
}

// credit pays amount from account from to the card, repaying what the
// card owes first.
func (c *Card) credit(from int64, kind string, amount int64) []Effect {
	if amount <= 0 {
		return nil
	}
	repay := min(amount, -c.Overdraft)
	var effects []Effect
	if repay > 0 {
		effects = append(effects, c.transfer(KindRepayment, from, c.overdraftID, repay))
		c.Overdraft += repay
	}
	if rest := amount - repay; rest > 0 {
		effects = append(effects, c.transfer(kind, from, c.cashID, rest))
		c.Cash += rest
	}
	return effects
}

// ReduceHold lowers an active hold to keep; zero releases it.
func (c *Card) ReduceHold(h *Hold, keep int64) Effect {
	keep = max(0, min(keep, h.Remaining))
	state := HoldActive
	if keep == 0 {
		state = HoldReleased
	}
	c.Held -= h.Remaining - keep
	h.Remaining, h.State = keep, state
	return changeHold{id: h.ID, remaining: keep, state: state}
}

// CaptureHold closes an active hold and pays amount, which may differ from
// the hold, to the bank. A completion cannot be refused for funds.
func (c *Card) CaptureHold(h *Hold, amount int64) []Effect {
	c.Held -= h.Remaining
	h.Remaining, h.State = 0, HoldCaptured
	effects := []Effect{changeHold{id: h.ID, remaining: 0, state: HoldCaptured}}
	return append(effects, c.ForceDebit(KindCapture, amount)...)
}
