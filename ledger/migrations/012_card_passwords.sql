-- A cardholder signs in to the card's pages with the card number and a
-- password an operator set, which they must change at first sign-in. Only
-- a slow salted hash of it is kept. Failed sign-ins are counted; enough of
-- them in a row lock the card's sign-in for a while.
CREATE TABLE card_passwords (
    card_id      bigint PRIMARY KEY REFERENCES cards (id),
    hash         text NOT NULL CHECK (hash ~ '^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$'),
    must_change  boolean NOT NULL DEFAULT true,
    failures     integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    locked_until timestamptz,
    set_by       text NOT NULL CHECK (set_by <> ''),
    set_at       timestamptz NOT NULL DEFAULT now(),
    changed_at   timestamptz
);
