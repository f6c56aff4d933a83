-- Instant redemption: orders to the fund company, the daily quota, and the
-- fencing token of the last etcd lock a card was worked under.

-- A write made under a card's etcd lock raises this to the lock's token
-- and is refused if a newer token has been seen: a holder that lost its
-- lock without noticing cannot write.
ALTER TABLE cards ADD COLUMN fence bigint NOT NULL DEFAULT 0;

-- Fund shares being redeemed sit in a system account until the fund
-- company confirms (they go to the card's cash) or refuses (they go back).
ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN ('cash', 'fund', 'overdraft',
    'settlement', 'fund_omnibus', 'fund_subscription', 'fund_redeeming', 'opening'));
ALTER TABLE accounts DROP CONSTRAINT accounts_card_or_system;
ALTER TABLE accounts ADD CONSTRAINT accounts_card_or_system CHECK ((card_id IS NULL) =
    (kind IN ('settlement', 'fund_omnibus', 'fund_subscription', 'fund_redeeming', 'opening')));

CREATE TABLE redemption_orders (
    id              text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{8,64}$'),
    card_id         bigint NOT NULL REFERENCES cards (id),
    amount          bigint NOT NULL CHECK (amount > 0),
    currency        char(3) NOT NULL,
    purpose         text NOT NULL CHECK (purpose IN ('shortfall', 'transfer_out')),
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'confirmed', 'failed')),
    quota_day       date NOT NULL,
    fence           bigint NOT NULL,
    checks          integer NOT NULL DEFAULT 0,
    next_check_at   timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz,
    CONSTRAINT redemption_orders_resolved CHECK ((state = 'pending') = (resolved_at IS NULL))
);
CREATE INDEX redemption_orders_due ON redemption_orders (next_check_at) WHERE state = 'pending';
CREATE INDEX redemption_orders_by_card ON redemption_orders (card_id, created_at);

-- An order is resolved once and for all.
CREATE FUNCTION guard_order_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state <> 'pending' AND NEW.state IS DISTINCT FROM OLD.state THEN
        RAISE EXCEPTION 'order % is already %', OLD.id, OLD.state USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.id <> OLD.id OR NEW.card_id <> OLD.card_id OR NEW.amount <> OLD.amount OR NEW.quota_day <> OLD.quota_day THEN
        RAISE EXCEPTION 'order % cannot change what it is', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER redemption_orders_guard BEFORE UPDATE ON redemption_orders FOR EACH ROW EXECUTE FUNCTION guard_order_update();
CREATE TRIGGER redemption_orders_no_delete BEFORE DELETE ON redemption_orders FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- Instant redemptions per card per day (the day of the quota's time zone),
-- counted when an order is placed and given back when it fails.
CREATE TABLE redemption_quota (
    card_id bigint NOT NULL REFERENCES cards (id),
    day     date NOT NULL,
    used    bigint NOT NULL CHECK (used >= 0),
    PRIMARY KEY (card_id, day)
);

ALTER TABLE transfers ADD COLUMN order_id text REFERENCES redemption_orders (id);
CREATE INDEX transfers_by_order ON transfers (order_id) WHERE order_id IS NOT NULL;
