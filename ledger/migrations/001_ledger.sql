-- Goldcard ledger: cards, their accounts, and every movement of money as a
-- balanced transfer between two accounts.
--
-- Card accounts keep their balance and held amount in their own row,
-- maintained by triggers on transfers and holds, so the row and the
-- movements can never disagree. System accounts (bank settlement, the
-- fund's side) are touched by every card; their balance is derived from
-- transfers, so no authorisation ever waits on a lock of theirs.

CREATE TABLE cards (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pan         text NOT NULL CONSTRAINT cards_pan_key UNIQUE CHECK (pan ~ '^[0-9]{12,19}$'),
    currency    char(3) NOT NULL CHECK (currency ~ '^[0-9]{3}$'),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    card_id     bigint REFERENCES cards (id),
    kind        text NOT NULL CHECK (kind IN ('cash', 'fund', 'overdraft',
                    'settlement', 'fund_omnibus', 'fund_subscription', 'opening')),
    currency    char(3) NOT NULL CHECK (currency ~ '^[0-9]{3}$'),
    balance     bigint NOT NULL DEFAULT 0,
    held        bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
    CONSTRAINT accounts_card_or_system CHECK ((card_id IS NULL) = (kind IN ('settlement', 'fund_omnibus', 'fund_subscription', 'opening'))),
    -- The guarantees that must never fail, whatever the code above does.
    CONSTRAINT accounts_available_not_negative CHECK (kind <> 'cash' OR balance - held >= 0),
    CONSTRAINT accounts_fund_not_negative CHECK (kind <> 'fund' OR balance >= 0),
    CONSTRAINT accounts_overdraft_not_positive CHECK (kind <> 'overdraft' OR balance <= 0),
    CONSTRAINT accounts_only_cash_holds CHECK (kind = 'cash' OR held = 0),
    CONSTRAINT accounts_system_derived CHECK (card_id IS NOT NULL OR (balance = 0 AND held = 0))
);
CREATE UNIQUE INDEX accounts_card_kind ON accounts (card_id, kind) WHERE card_id IS NOT NULL;
CREATE UNIQUE INDEX accounts_system_kind ON accounts (kind, currency) WHERE card_id IS NULL;

-- Every financial message answered, with the exact response sent: the
-- idempotency record. A repeat gets the stored response back.
CREATE TABLE requests (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    bank            text NOT NULL,
    acquirer        text NOT NULL,
    stan            text NOT NULL,
    transmitted     text NOT NULL,
    terminal        text NOT NULL,
    mti_class       text NOT NULL CHECK (mti_class IN ('010', '012', '020', '022', '040', '042')),
    mti             text NOT NULL CHECK (mti ~ '^[0-9]{4}$'),
    rrn             text NOT NULL,
    fingerprint     bytea NOT NULL,
    card_id         bigint REFERENCES cards (id),
    txn_type        text NOT NULL,
    amount          bigint NOT NULL CHECK (amount >= 0),
    response_code   text NOT NULL CHECK (response_code ~ '^[0-9A-Z]{2}$'),
    auth_code       text,
    response        bytea NOT NULL,
    -- A reversal points at the request it undid; only one may.
    reverses        bigint CONSTRAINT requests_reverses_key UNIQUE REFERENCES requests (id),
    -- A reversal that arrived before its original keeps the original's
    -- key (from DE90) so the original can be declined when it comes.
    orig_class      text,
    orig_acquirer   text,
    orig_stan       text,
    orig_transmitted text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Most selective column first: an index that starts with a column a
    -- query does not give is never a fair candidate for it.
    CONSTRAINT requests_idempotency UNIQUE (stan, transmitted, terminal, acquirer, bank, mti_class),
    CONSTRAINT requests_reverses_is_reversal CHECK (reverses IS NULL OR mti_class IN ('040', '042'))
);
CREATE INDEX requests_by_rrn ON requests (rrn, terminal, acquirer, bank, stan);
CREATE INDEX requests_by_card ON requests (card_id, id);
-- Reversals still waiting for their original, by DE90 and by RRN.
CREATE INDEX requests_waiting_by_original ON requests (orig_stan, orig_transmitted, orig_acquirer, bank)
    WHERE reverses IS NULL AND orig_stan IS NOT NULL;
CREATE INDEX requests_waiting_by_rrn ON requests (rrn, terminal, acquirer, bank, stan)
    WHERE reverses IS NULL AND mti_class IN ('040', '042');

CREATE TABLE holds (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id  bigint NOT NULL CONSTRAINT holds_request_key UNIQUE REFERENCES requests (id),
    account_id  bigint NOT NULL REFERENCES accounts (id),
    amount      bigint NOT NULL CHECK (amount > 0),
    remaining   bigint NOT NULL CHECK (remaining >= 0 AND remaining <= amount),
    state       text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'captured', 'released', 'expired')),
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT holds_closed_empty CHECK (state = 'active' OR remaining = 0)
);
CREATE INDEX holds_active_expiry ON holds (expires_at) WHERE state = 'active';
CREATE INDEX holds_by_account ON holds (account_id, id);

CREATE TABLE transfers (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id      bigint REFERENCES requests (id),
    kind            text NOT NULL CHECK (kind ~ '^[a-z_]+$'),
    debit_account   bigint NOT NULL,
    credit_account  bigint NOT NULL,
    currency        char(3) NOT NULL,
    amount          bigint NOT NULL CHECK (amount > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT transfers_two_accounts CHECK (debit_account <> credit_account)
);
CREATE INDEX transfers_debit ON transfers (debit_account, id);
CREATE INDEX transfers_credit ON transfers (credit_account, id);
CREATE INDEX transfers_by_request ON transfers (request_id) WHERE request_id IS NOT NULL;

-- apply_transfer moves a transfer's amount between its two accounts. It
-- checks both accounts exist and share the transfer's currency (a foreign
-- key would lock the system account's row in every transaction), and only
-- card accounts have a stored balance to change.
CREATE FUNCTION apply_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    side   record;
    acct   record;
BEGIN
    FOR side IN SELECT * FROM (VALUES (NEW.debit_account, -NEW.amount), (NEW.credit_account, NEW.amount)) AS s(id, delta) LOOP
        SELECT card_id, currency INTO acct FROM accounts WHERE id = side.id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'transfer % names unknown account %', NEW.id, side.id USING ERRCODE = 'foreign_key_violation';
        END IF;
        IF acct.currency <> NEW.currency THEN
            RAISE EXCEPTION 'transfer % in % touches account % in %', NEW.id, NEW.currency, side.id, acct.currency
                USING ERRCODE = 'check_violation';
        END IF;
        IF acct.card_id IS NOT NULL THEN
            UPDATE accounts SET balance = balance + side.delta WHERE id = side.id;
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
CREATE TRIGGER transfers_apply AFTER INSERT ON transfers FOR EACH ROW EXECUTE FUNCTION apply_transfer();

-- apply_hold keeps accounts.held equal to the sum of active holds.
CREATE FUNCTION apply_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND (NEW.account_id <> OLD.account_id OR NEW.amount <> OLD.amount OR NEW.request_id <> OLD.request_id) THEN
        RAISE EXCEPTION 'hold % may only change its remaining amount and state', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.state <> 'active' THEN
        RAISE EXCEPTION 'hold % is already %', OLD.id, OLD.state USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    UPDATE accounts SET held = held + NEW.remaining - (CASE WHEN TG_OP = 'UPDATE' THEN OLD.remaining ELSE 0 END)
     WHERE id = NEW.account_id;
    RETURN NULL;
END $$;
CREATE TRIGGER holds_apply AFTER INSERT OR UPDATE ON holds FOR EACH ROW EXECUTE FUNCTION apply_hold();

-- Money is never moved by editing history: transfers are never changed,
-- nothing is deleted, a balance changes only through a transfer or a hold,
-- and a reversal's link to its original is set at most once.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % is not allowed: the ledger is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER transfers_append_only BEFORE UPDATE OR DELETE ON transfers FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER holds_no_delete BEFORE DELETE ON holds FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER requests_no_delete BEFORE DELETE ON requests FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER accounts_no_delete BEFORE DELETE ON accounts FOR EACH ROW EXECUTE FUNCTION refuse_change();

CREATE FUNCTION guard_balance_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() < 2 AND (NEW.balance <> OLD.balance OR NEW.held <> OLD.held) THEN
        RAISE EXCEPTION 'balance of account % changes only through transfers and holds', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.id <> OLD.id OR NEW.kind <> OLD.kind OR NEW.currency <> OLD.currency OR NEW.card_id IS DISTINCT FROM OLD.card_id THEN
        RAISE EXCEPTION 'account % cannot change what it is', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER accounts_guard_update BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION guard_balance_update();

CREATE FUNCTION guard_request_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.reverses IS NOT NULL OR NEW.reverses IS NULL
       OR (to_jsonb(NEW) - 'reverses') <> (to_jsonb(OLD) - 'reverses') THEN
        RAISE EXCEPTION 'request % may only be linked to the request it reverses, once', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER requests_guard_update BEFORE UPDATE ON requests FOR EACH ROW EXECUTE FUNCTION guard_request_update();
