-- The durable timer's tasks, the sweep into the fund and the daily yield.

-- One-shot tasks, unique by (kind, key): scheduling one twice is a no-op.
-- The leader claims a task (claim, claimed_until) before running it, so no
-- two instances run a task at once; a claim that runs out may be taken
-- again (a crashed leader's tasks are not lost).
CREATE TABLE timer_tasks (
    kind            text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    due_at          timestamptz NOT NULL,
    payload         jsonb NOT NULL DEFAULT '{}',
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'dead', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0,
    claim           uuid,
    claimed_until   timestamptz,
    last_error      text,
    fired_at        timestamptz,
    done_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key)
);
CREATE INDEX timer_tasks_pending ON timer_tasks (due_at) WHERE state = 'pending';
CREATE INDEX timer_tasks_by_state ON timer_tasks (state, kind);

-- What the probe task kind did, for goldcard bench timer and the timer's
-- crash tests: each probe's effect is applied once, however often it ran.
CREATE TABLE timer_probes (
    key         text PRIMARY KEY,
    due_at      timestamptz NOT NULL,
    fired_at    timestamptz NOT NULL,
    runs        integer NOT NULL DEFAULT 1
);

-- Sweeping is per card: on, and the amount kept (NULL: the configured one).
ALTER TABLE cards ADD COLUMN sweep_enabled boolean NOT NULL DEFAULT false;
ALTER TABLE cards ADD COLUMN sweep_threshold bigint CHECK (sweep_threshold >= 0);

-- The remainder of each day's yield after every card's share is rounded
-- down to the fen.
ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN ('cash', 'fund', 'overdraft',
    'settlement', 'fund_omnibus', 'fund_subscription', 'fund_redeeming', 'yield_remainder', 'opening'));
ALTER TABLE accounts DROP CONSTRAINT accounts_card_or_system;
ALTER TABLE accounts ADD CONSTRAINT accounts_card_or_system CHECK ((card_id IS NULL) =
    (kind IN ('settlement', 'fund_omnibus', 'fund_subscription', 'fund_redeeming', 'yield_remainder', 'opening')));

-- A sweep moves a card's excess into a pending subscription on a trading
-- day, once per card per day; it is confirmed into the fund on the next
-- trading day, or refused and given back.
CREATE TABLE sweeps (
    id          text PRIMARY KEY,
    card_id     bigint NOT NULL REFERENCES cards (id),
    day         date NOT NULL,
    amount      bigint NOT NULL CHECK (amount > 0),
    currency    char(3) NOT NULL,
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'confirmed', 'failed')),
    confirm_on  date NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    CONSTRAINT sweeps_once_a_day UNIQUE (card_id, day),
    CONSTRAINT sweeps_resolved CHECK ((state = 'pending') = (resolved_at IS NULL))
);
CREATE INDEX sweeps_pending ON sweeps (confirm_on) WHERE state = 'pending';
CREATE TRIGGER sweeps_no_delete BEFORE DELETE ON sweeps FOR EACH ROW EXECUTE FUNCTION refuse_change();

-- The daily yield, posted once per card per day: each card's share of
-- the fund's income rounded down to the fen, and per currency and day the
-- fen those roundings left, kept in the yield remainder account.
CREATE TABLE yields (
    card_id     bigint NOT NULL REFERENCES cards (id),
    day         date NOT NULL,
    rate        bigint NOT NULL CHECK (rate >= 0), -- income per 10,000 shares, in 0.0001 units of currency
    shares      bigint NOT NULL CHECK (shares >= 0),
    amount      bigint NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (card_id, day)
);
CREATE TABLE yield_days (
    day             date NOT NULL,
    currency        char(3) NOT NULL,
    rate            bigint NOT NULL,
    shares          bigint NOT NULL,
    income          bigint NOT NULL, -- the whole day's income, rounded down once
    paid            bigint NOT NULL, -- what the cards' shares came to
    remainder       bigint NOT NULL CHECK (remainder >= 0),
    PRIMARY KEY (day, currency),
    CONSTRAINT yield_days_sum CHECK (income = paid + remainder)
);

-- Orders are followed up by the timer now.
DROP INDEX redemption_orders_due;
ALTER TABLE redemption_orders DROP COLUMN next_check_at;

ALTER TABLE transfers ADD COLUMN sweep_id text REFERENCES sweeps (id);

-- Every currency in use has every system account.
INSERT INTO accounts (kind, currency)
SELECT k.kind, c.currency FROM (SELECT DISTINCT currency FROM cards) c
CROSS JOIN (VALUES ('settlement'), ('fund_omnibus'), ('fund_subscription'), ('fund_redeeming'),
    ('yield_remainder'), ('opening')) AS k(kind)
ON CONFLICT (kind, currency) WHERE card_id IS NULL DO NOTHING;
