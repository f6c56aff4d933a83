package ledger

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// Card statuses.
const (
	StatusActive  = "active"
	StatusBlocked = "blocked"
)

// Card is a card and its accounts' balances, in minor units, as read in a
// transaction. Methods that plan movements update these figures to what
// they will be once the planned effects are saved.
type Card struct {
	ID int64
	// Ref names the card outside the ledger (crd_ and 24 hex digits), so
	// that URLs, logs and tickets can point at it without its PAN.
	Ref string
	// Masked is its PAN's first six and last four digits; the ledger
	// keeps the whole PAN only sealed.
	Masked   string
	Currency string
	Status   string

	Cash      int64 // cash account balance (never below Held)
	Held      int64 // sum of active holds on the cash account
	Overdraft int64 // what the card owes after forced postings (<= 0)
	Fund      int64 // fund position (NAV 1.00: shares are minor units)

	// RedeemedToday is the instant redemption quota used on the day the
	// card was read for (see Find.Day).
	RedeemedToday int64
	// Fence is the newest lock token the card has been worked under.
	Fence int64

	day                         time.Time // the quota day RedeemedToday counts
	cashID, fundID, overdraftID int64
	settlementID, redeemingID   int64
}

// RedeemableToday is what can be redeemed from the fund right now: the
// fund balance, capped by what is left of the day's quota.
func (c *Card) RedeemableToday(quota int64) int64 {
	return max(0, min(c.Fund, quota-c.RedeemedToday))
}

// Balance is the card's ledger balance: cash less what it owes.
func (c *Card) Balance() int64 { return c.Cash + c.Overdraft }

// Available is what the card can spend without the fund: its cash less
// its holds and what it owes. It can be negative while the card owes more
// than its cash.
func (c *Card) Available() int64 { return c.Cash - c.Held + c.Overdraft }

// NewCard describes a card to issue.
type NewCard struct {
	PAN         string
	Currency    string // ISO 4217 numeric
	Balance     int64  // opening cash balance
	FundBalance int64  // opening fund position
}

var (
	panPattern      = regexp.MustCompile(`^[0-9]{12,19}$`)
	currencyPattern = regexp.MustCompile(`^[0-9]{3}$`)
	// refPattern is the format the database's cards_ref_format enforces.
	refPattern = regexp.MustCompile(`^crd_[0-9a-f]{24}$`)
)

// Validate reports what is wrong with a card request, if anything.
func (n NewCard) Validate() error {
	switch {
	case !panPattern.MatchString(n.PAN):
		return fmt.Errorf("%w: PAN must be 12 to 19 digits", ErrInvalidCard)
	case !currencyPattern.MatchString(n.Currency):
		return fmt.Errorf("%w: currency must be an ISO 4217 numeric code such as 156", ErrInvalidCard)
	case n.Balance < 0 || n.FundBalance < 0:
		return fmt.Errorf("%w: opening balances cannot be negative", ErrInvalidCard)
	}
	return nil
}

// CreateCard issues a card with its cash, fund and overdraft accounts and
// posts its opening balances from the opening account.
func (l *Ledger) CreateCard(ctx context.Context, n NewCard) (*Card, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	if err := l.EnsureSystemAccounts(ctx, n.Currency); err != nil {
		return nil, err
	}
	opening, err := l.systemAccount(ctx, l.pool, SystemOpening, n.Currency)
	if err != nil {
		return nil, err
	}
	var card *Card
	err = l.Do(ctx, func(tx *Tx) error {
		var id int64
		p := l.keys.sealPAN(n.PAN)
		// A card stored before PANs were sealed, not yet sealed, is found
		// by its plain PAN.
		err := tx.tx.QueryRow(ctx, `INSERT INTO cards (pan_hash, pan_sealed, pan_key, pan_masked, currency)
			SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM cards WHERE pan_clear = $6)
			RETURNING id`, p.hash, p.sealed, p.key, p.masked, n.Currency, l.plainPAN(n.PAN)).Scan(&id)
		if code, constraint := pgCode(err); errors.Is(err, pgx.ErrNoRows) || (code == codeUniqueViolation && constraint == "cards_pan_hash_key") {
			return ErrCardExists
		}
		if err != nil {
			return fmt.Errorf("inserting card: %w", err)
		}
		_, err = tx.tx.Exec(ctx, `INSERT INTO accounts (card_id, kind, currency)
			VALUES ($1, 'cash', $2), ($1, 'fund', $2), ($1, 'overdraft', $2)`, id, n.Currency)
		if err != nil {
			return fmt.Errorf("opening accounts: %w", err)
		}
		if card, err = tx.lockCard(ctx, "c.id = $1", time.Time{}, id); err != nil {
			return err
		}
		var effects []Effect
		if n.Balance > 0 {
			effects = append(effects, transfer{kind: KindOpening, debit: opening, credit: card.cashID, currency: n.Currency, amount: n.Balance})
		}
		if n.FundBalance > 0 {
			effects = append(effects, transfer{kind: KindOpening, debit: opening, credit: card.fundID, currency: n.Currency, amount: n.FundBalance})
		}
		card.Cash, card.Fund = n.Balance, n.FundBalance
		return tx.apply(ctx, effects)
	})
	if err != nil {
		return nil, err
	}
	return card, nil
}

// Card reads a card's balances, and its quota used on day, without
// locking it.
func (l *Ledger) Card(ctx context.Context, pan string, day time.Time) (*Card, error) {
	where, more := l.byPAN(pan)
	return l.readCard(ctx, where, day, l.keys.panHash(pan), more...)
}

// byPAN finds a card of cards c by $1, its PAN's hash, and while cards
// stored before PANs were sealed may remain, by $3, its plain PAN.
func (l *Ledger) byPAN(pan string) (where string, more []any) {
	if !l.plainCards.Load() {
		return "c.pan_hash = $1", nil
	}
	return "(c.pan_hash = $1 OR c.pan_clear = $3)", []any{pan}
}

// plainPAN is what a look-up by PAN asks of cards stored before PANs were
// sealed: nil (nothing) once there are none.
func (l *Ledger) plainPAN(pan string) *string {
	if !l.plainCards.Load() {
		return nil
	}
	return &pan
}

// CardByRef is Card for a card known by its Ref. A ref that is not in the
// format refs are made in is ErrUnknownCard, without asking the database.
func (l *Ledger) CardByRef(ctx context.Context, ref string, day time.Time) (*Card, error) {
	if !refPattern.MatchString(ref) {
		return nil, ErrUnknownCard
	}
	return l.readCard(ctx, "c.ref = $1", day, ref)
}

// CardByID is Card for a card known by its id.
func (l *Ledger) CardByID(ctx context.Context, id int64, day time.Time) (*Card, error) {
	return l.readCard(ctx, "c.id = $1", day, id)
}

// readCard reads the card where finds: $1 is key, $2 day, and $3 on are
// more.
func (l *Ledger) readCard(ctx context.Context, where string, day time.Time, key any, more ...any) (*Card, error) {
	rows, err := l.pool.Query(ctx, cardQuery+" WHERE "+where+" ORDER BY a.id", append([]any{key, day}, more...)...)
	if err != nil {
		return nil, fmt.Errorf("reading card: %w", err)
	}
	card, err := scanCard(rows)
	if err != nil {
		return nil, err
	}
	if card == nil {
		return nil, ErrUnknownCard
	}
	card.day = day
	return card, l.resolveSystem(ctx, l.pool, card)
}

// resolveSystem fills in the system accounts a card's movements use.
func (l *Ledger) resolveSystem(ctx context.Context, q querier, c *Card) error {
	var err error
	if c.settlementID, err = l.systemAccount(ctx, q, SystemSettlement, c.Currency); err != nil {
		return err
	}
	c.redeemingID, err = l.systemAccount(ctx, q, SystemFundRedeeming, c.Currency)
	return err
}

// SetCardStatus blocks or unblocks a card.
func (l *Ledger) SetCardStatus(ctx context.Context, cardID int64, status string) error {
	if status != StatusActive && status != StatusBlocked {
		return fmt.Errorf("%w: status must be %q or %q", ErrInvalidCard, StatusActive, StatusBlocked)
	}
	tag, err := l.pool.Exec(ctx, `UPDATE cards SET status = $2 WHERE id = $1`, cardID, status)
	if err != nil {
		return fmt.Errorf("setting card status: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrUnknownCard
	}
	return nil
}

// cardQuery reads a card's accounts, one row each; $2 is the quota day.
const cardQuery = `SELECT c.id, c.ref, ` + maskedColumn + `, c.currency, c.status, c.fence,
		coalesce((SELECT q.used FROM redemption_quota q WHERE q.card_id = c.id AND q.day = $2), 0),
		a.id, a.kind, a.balance, a.held
	FROM cards c JOIN accounts a ON a.card_id = c.id`

// maskedColumn is a card's masked PAN, of cards c, sealed or not yet.
const maskedColumn = `coalesce(c.pan_masked, left(c.pan_clear, 6) || repeat('*', length(c.pan_clear) - 10) || right(c.pan_clear, 4))`

// LockCard is LockCardByID for a card known by its PAN.
func (tx *Tx) LockCard(ctx context.Context, pan string, day time.Time) (*Card, error) {
	where, more := tx.l.byPAN(pan)
	return tx.lockCard(ctx, where, day, tx.l.keys.panHash(pan), more...)
}

// LockCardByID reads a card by id, with its quota used on day, and locks
// its accounts until the transaction ends. It returns nil, nil for an
// unknown card.
func (tx *Tx) LockCardByID(ctx context.Context, id int64, day time.Time) (*Card, error) {
	return tx.lockCard(ctx, "c.id = $1", day, id)
}

// LockCardsByID locks the cards of ids that exist, as LockCardByID locks
// one, in one statement, and returns them in the order of their ids. Every
// lock is taken in account order, as each request's is.
func (tx *Tx) LockCardsByID(ctx context.Context, ids []int64) ([]*Card, error) {
	rows, err := tx.tx.Query(ctx, cardQuery+" WHERE c.id = ANY($1) ORDER BY a.id FOR UPDATE OF a", ids, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("locking cards: %w", err)
	}
	byID, _, err := scanCards(rows, false)
	if err != nil {
		return nil, err
	}
	out := make([]*Card, 0, len(byID))
	for _, c := range byID {
		if err := tx.l.resolveSystem(ctx, tx.tx, c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *Card) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

func (tx *Tx) lockCard(ctx context.Context, where string, day time.Time, key any, more ...any) (*Card, error) {
	rows, err := tx.tx.Query(ctx, cardQuery+" WHERE "+where+" ORDER BY a.id FOR UPDATE OF a", append([]any{key, day}, more...)...)
	if err != nil {
		return nil, fmt.Errorf("locking card: %w", err)
	}
	card, err := scanCard(rows)
	if err != nil || card == nil {
		return nil, err
	}
	card.day = day
	return card, tx.l.resolveSystem(ctx, tx.tx, card)
}

func scanCard(rows pgx.Rows) (*Card, error) {
	cards, _, err := scanCards(rows, false)
	if err != nil || len(cards) == 0 {
		return nil, err
	}
	if len(cards) > 1 {
		return nil, errors.New("ledger: one card asked for, several read")
	}
	for _, c := range cards {
		return c, nil
	}
	return nil, nil
}
