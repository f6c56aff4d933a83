package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNoPassword is a card whose cardholder has no password to sign in with.
var ErrNoPassword = errors.New("ledger: the card has no password")

// CardPassword is what the ledger keeps of a cardholder's password: its
// hash (bcrypt), whether it must be changed at the next sign-in (one an
// operator set), and the failed sign-ins since the last good one.
type CardPassword struct {
	CardID      int64
	Hash        string
	MustChange  bool
	Failures    int
	LockedUntil *time.Time
}

// Locked reports whether sign-in is locked at now.
func (p *CardPassword) Locked(now time.Time) bool {
	return p.LockedUntil != nil && now.Before(*p.LockedUntil)
}

// SetCardPassword gives a card's cardholder a password, as hash, set by an
// operator: it must be changed at the next sign-in, and any lock on
// signing in is lifted.
func (l *Ledger) SetCardPassword(ctx context.Context, cardID int64, hash, by string) error {
	tag, err := l.pool.Exec(ctx, `INSERT INTO card_passwords (card_id, hash, set_by)
		SELECT id, $2, $3 FROM cards WHERE id = $1
		ON CONFLICT (card_id) DO UPDATE SET hash = $2, set_by = $3, set_at = now(), must_change = true,
			failures = 0, locked_until = NULL, changed_at = NULL`, cardID, hash, by)
	if err != nil {
		return fmt.Errorf("setting a card's password: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrUnknownCard
	}
	return nil
}

// ChangeCardPassword is the cardholder's own change of password, to hash.
func (l *Ledger) ChangeCardPassword(ctx context.Context, cardID int64, hash string) error {
	tag, err := l.pool.Exec(ctx, `UPDATE card_passwords SET hash = $2, must_change = false, changed_at = now(),
		failures = 0, locked_until = NULL WHERE card_id = $1`, cardID, hash)
	if err != nil {
		return fmt.Errorf("changing a card's password: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNoPassword
	}
	return nil
}

// CardPasswordOf reads a card's password record.
func (l *Ledger) CardPasswordOf(ctx context.Context, cardID int64) (*CardPassword, error) {
	p := &CardPassword{CardID: cardID}
	err := l.pool.QueryRow(ctx, `SELECT hash, must_change, failures, locked_until FROM card_passwords WHERE card_id = $1`, cardID).
		Scan(&p.Hash, &p.MustChange, &p.Failures, &p.LockedUntil)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNoPassword
	}
	if err != nil {
		return nil, fmt.Errorf("reading a card's password: %w", err)
	}
	return p, nil
}

// SignInFailed counts a failed sign-in to a card; the lockAfter-th in a
// row locks signing in until lockFor from now (each further one too). It
// returns the record as it then stands. Two failures at once are both
// counted.
func (l *Ledger) SignInFailed(ctx context.Context, cardID int64, lockAfter int, lockFor time.Duration) (*CardPassword, error) {
	p := &CardPassword{CardID: cardID}
	err := l.pool.QueryRow(ctx, `UPDATE card_passwords SET failures = failures + 1,
			locked_until = CASE WHEN failures + 1 >= $2 THEN now() + $3 * interval '1 microsecond' ELSE locked_until END
		WHERE card_id = $1 RETURNING hash, must_change, failures, locked_until`, cardID, lockAfter, lockFor.Microseconds()).
		Scan(&p.Hash, &p.MustChange, &p.Failures, &p.LockedUntil)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNoPassword
	}
	if err != nil {
		return nil, fmt.Errorf("counting a failed sign-in: %w", err)
	}
	return p, nil
}

// SignedIn clears a card's count of failed sign-ins after a good one.
func (l *Ledger) SignedIn(ctx context.Context, cardID int64) error {
	if _, err := l.pool.Exec(ctx, `UPDATE card_passwords SET failures = 0, locked_until = NULL WHERE card_id = $1`, cardID); err != nil {
		return fmt.Errorf("recording a sign-in: %w", err)
	}
	return nil
}
