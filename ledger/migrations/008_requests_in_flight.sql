-- Requests being decided, transaction keys, reversals that state what
-- stands, and exceptions for an operator.

-- A request's key is a digest of the fields its bank names as what
-- identifies a transaction (see config's txn_key), with the bank and the
-- MTI class: acquirers that stamp a new DE7 on every transmission send
-- repeats under the same key. Requests answered before this migration keep
-- the key of the fields that identified them then (DE32, DE11, DE7, DE41)
-- and are marked legacy: a repeat is looked for under that key too.
ALTER TABLE requests
    ADD COLUMN txn_key    bytea,
    ADD COLUMN legacy     boolean NOT NULL DEFAULT false,
    ADD COLUMN local_date text NOT NULL DEFAULT '',
    ADD COLUMN local_time text NOT NULL DEFAULT '',
    ADD COLUMN currency   text NOT NULL DEFAULT '',
    -- deciding: an original whose decision waits on the fund company;
    -- every copy that arrives meanwhile waits for its answer. released:
    -- it was answered 91 without a decision (its response is kept for the
    -- copies that waited); a later repeat decides it afresh. answered:
    -- decided, and its response is final.
    ADD COLUMN state      text NOT NULL DEFAULT 'answered' CHECK (state IN ('deciding', 'released', 'answered')),
    -- Who is deciding it, and until when (the database's clock): past
    -- that, a repeat may take it over, so a switch that died deciding
    -- blocks nothing for longer than its bank's timeout.
    ADD COLUMN claim      bigint,
    ADD COLUMN respond_by timestamptz,
    -- A reversal whose original has never been seen waits for it; any
    -- other reversal is settled when it arrives and never matches later.
    ADD COLUMN waiting    boolean NOT NULL DEFAULT false,
    -- What a reversal says stands of its original (DE95's actual amount,
    -- or 0), and, once it moved money, what stands of it after it.
    ADD COLUMN stated     bigint CHECK (stated >= 0),
    ADD COLUMN stands     bigint CHECK (stands >= 0);

-- The key of the fields that identified a request before this migration.
CREATE FUNCTION legacy_txn_key(bank text, class text, acquirer text, stan text, transmitted text, terminal text)
RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT substring(sha256(convert_to(concat_ws(chr(31), bank, class, 'acquirer=' || acquirer, 'stan=' || stan,
        'transmitted=' || transmitted, 'terminal=' || terminal), 'UTF8')) FROM 1 FOR 16)
$$;

-- A switch of a build before this migration cannot write here: its
-- requests have no key (NOT NULL below), so it answers 96 and moves no
-- money. Switches are upgraded by stopping the old ones first.

-- Before this migration every reversal not linked to its original was
-- taken as waiting, and an original could be reversed once. What a linked
-- reversal left standing is what its original's hold still holds, or its
-- amount less what the reversal moved (nothing, when it moved nothing).
-- History is rewritten here only to add what it did not record, with its
-- guard set aside.
ALTER TABLE requests DISABLE TRIGGER requests_guard_update;
UPDATE requests SET txn_key = legacy_txn_key(bank, mti_class, acquirer, stan, transmitted, terminal), legacy = true;
UPDATE requests SET waiting = true WHERE reverses IS NULL AND mti_class IN ('040', '042');
UPDATE requests SET stated = 0 WHERE mti_class IN ('040', '042');
UPDATE requests v SET stands = (
    SELECT CASE WHEN x.left_standing < o.amount THEN x.left_standing END
    FROM requests o LEFT JOIN holds h ON h.request_id = o.id,
    LATERAL (SELECT CASE
        WHEN h.id IS NULL THEN greatest(0, o.amount - coalesce((SELECT sum(t.amount) FROM transfers t WHERE t.request_id = v.id), 0))
        WHEN h.state = 'active' THEN h.remaining
        ELSE 0
    END AS left_standing) x
    WHERE o.id = v.reverses)
WHERE v.reverses IS NOT NULL;
ALTER TABLE requests ENABLE TRIGGER requests_guard_update;

ALTER TABLE requests
    ALTER COLUMN txn_key SET NOT NULL,
    ADD CONSTRAINT requests_txn_key_size CHECK (length(txn_key) = 16),
    DROP CONSTRAINT requests_idempotency,
    ADD CONSTRAINT requests_txn_key UNIQUE (txn_key),
    ALTER COLUMN response DROP NOT NULL,
    ALTER COLUMN response_code DROP NOT NULL,
    ADD CONSTRAINT requests_answered CHECK ((state = 'deciding') = (response IS NULL) AND (response IS NULL) = (response_code IS NULL)),
    ADD CONSTRAINT requests_claimed CHECK (state = 'answered' OR (claim IS NOT NULL AND respond_by IS NOT NULL)),
    ADD CONSTRAINT requests_waiting_unlinked CHECK (NOT waiting OR (reverses IS NULL AND mti_class IN ('040', '042'))),
    ADD CONSTRAINT requests_stands_linked CHECK (stands IS NULL OR reverses IS NOT NULL),
    -- Several reversals may name one original (a partial one, then a full
    -- one), but no two may leave the same amount standing: each that moves
    -- money lowers what stands (see guard_reversal).
    DROP CONSTRAINT requests_reverses_key,
    ADD CONSTRAINT requests_reverses_stands UNIQUE (reverses, stands);

-- Reversals still waiting for their original: only those.
DROP INDEX requests_waiting_by_original;
DROP INDEX requests_waiting_by_rrn;
CREATE INDEX requests_waiting_by_original ON requests (orig_stan, orig_acquirer, bank) WHERE waiting AND orig_stan IS NOT NULL;
CREATE INDEX requests_waiting_by_rrn ON requests (rrn, terminal, acquirer, bank, stan) WHERE waiting;
-- Originals named by DE90 without their DE7.
CREATE INDEX requests_by_stan ON requests (stan, terminal, acquirer, bank);
-- When the last request keyed as before banks named their keys came: for
-- a day after it, a look-up searches by old keys too.
CREATE INDEX requests_legacy ON requests (created_at) WHERE legacy;

-- A request changes only as its life allows: a request being decided is
-- answered, released or taken over (only once its time is up); an
-- answered request is final, except that a waiting reversal is linked
-- once to the original that arrives after it (with what it then leaves
-- standing of it).
CREATE OR REPLACE FUNCTION guard_request_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id <> OLD.id OR NEW.txn_key <> OLD.txn_key OR NEW.bank <> OLD.bank OR NEW.mti_class <> OLD.mti_class
       OR NEW.fingerprint <> OLD.fingerprint THEN
        RAISE EXCEPTION 'request % cannot change what it is', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.state = 'answered' THEN
        IF NOT (OLD.waiting AND OLD.reverses IS NULL AND NEW.reverses IS NOT NULL AND OLD.stands IS NULL)
           OR (to_jsonb(NEW) - 'reverses' - 'waiting' - 'stands') <> (to_jsonb(OLD) - 'reverses' - 'waiting' - 'stands') THEN
            RAISE EXCEPTION 'request % is answered: only a waiting reversal may be linked to its original, once', OLD.id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
    END IF;
    IF OLD.state = 'deciding' AND NEW.claim IS DISTINCT FROM OLD.claim AND OLD.respond_by > clock_timestamp() THEN
        RAISE EXCEPTION 'request % is being decided until %', OLD.id, OLD.respond_by USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

-- guard_reversal keeps what a reversal says stands within its original:
-- less than it stood before, which is at most the original's amount.
CREATE FUNCTION guard_reversal() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    orig record;
    least_left bigint;
BEGIN
    SELECT amount, mti_class INTO orig FROM requests WHERE id = NEW.reverses;
    IF orig.mti_class IN ('040', '042') THEN
        RAISE EXCEPTION 'request % reverses a reversal', NEW.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    SELECT min(stands) INTO least_left FROM requests WHERE reverses = NEW.reverses AND id <> NEW.id;
    IF NEW.stands >= coalesce(least_left, orig.amount) THEN
        RAISE EXCEPTION 'reversal % leaves % standing of request %, which has % standing', NEW.id, NEW.stands, NEW.reverses,
            coalesce(least_left, orig.amount) USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER requests_guard_reversal BEFORE INSERT OR UPDATE OF stands ON requests
    FOR EACH ROW WHEN (NEW.stands IS NOT NULL) EXECUTE FUNCTION guard_reversal();

-- Messages the bank believes moved money that the switch did not post
-- (an advice in a currency the card does not hold, say): each waits for
-- an operator.
CREATE TABLE exceptions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL CHECK (kind ~ '^[a-z_]+$'),
    request_id  bigint NOT NULL REFERENCES requests (id),
    card_id     bigint REFERENCES cards (id),
    bank        text NOT NULL,
    currency    text NOT NULL,
    amount      bigint NOT NULL CHECK (amount >= 0),
    detail      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    resolution  text,
    CONSTRAINT exceptions_resolution CHECK ((resolved_at IS NULL) = (resolution IS NULL))
);
CREATE INDEX exceptions_open ON exceptions (id) WHERE resolved_at IS NULL;
CREATE TRIGGER exceptions_no_delete BEFORE DELETE ON exceptions FOR EACH ROW EXECUTE FUNCTION refuse_change();
-- An exception is resolved once, and says what it is for good.
CREATE FUNCTION guard_exception_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.resolved_at IS NOT NULL OR (to_jsonb(NEW) - 'resolved_at' - 'resolution') <> (to_jsonb(OLD) - 'resolved_at' - 'resolution') THEN
        RAISE EXCEPTION 'exception % may only be resolved, once', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER exceptions_guard_update BEFORE UPDATE ON exceptions FOR EACH ROW EXECUTE FUNCTION guard_exception_update();
