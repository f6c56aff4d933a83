-- Card data at rest: a PAN and a stored response are kept sealed
-- (AES-256-GCM) under a data key, each with the id of its key beside it; a
-- card is found by a keyed hash of its PAN (HMAC-SHA-256 under the lookup
-- key), never by the PAN itself. Data keys are kept wrapped under a
-- key-encryption key the database never sees, named by its check value.

CREATE TABLE data_keys (
    id          integer PRIMARY KEY CHECK (id > 0),
    -- data: seals PANs and responses; lookup: keys the PAN's hash and
    -- requests' fingerprints (one, never rotated).
    purpose     text NOT NULL CHECK (purpose IN ('data', 'lookup')),
    wrapped     bytea NOT NULL,
    kek         text NOT NULL CHECK (kek ~ '^[0-9a-f]{8}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- How far the rows sealed under earlier keys have been sealed again
    -- under this one, by id; when that was finished.
    resealed_cards    bigint NOT NULL DEFAULT 0,
    resealed_requests bigint NOT NULL DEFAULT 0,
    resealed_at timestamptz
);
CREATE UNIQUE INDEX data_keys_one_lookup ON data_keys (purpose) WHERE purpose = 'lookup';

-- A data key still opens what it sealed: it is never dropped, and never
-- becomes another key (only its wrapping and its progress change).
CREATE FUNCTION guard_data_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'data key % cannot be deleted: rows may be sealed under it', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.id <> OLD.id OR NEW.purpose <> OLD.purpose OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'data key % cannot change what it is', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER data_keys_guard BEFORE UPDATE OR DELETE ON data_keys FOR EACH ROW EXECUTE FUNCTION guard_data_key();
CREATE TRIGGER data_keys_no_truncate BEFORE TRUNCATE ON data_keys FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate();

-- Cards stored before sealing keep their plain PAN until the switch seals
-- them, in batches, while it serves; a sealed card keeps no plain copy.
-- The column is renamed so that a switch of the build before, which
-- would compare PANs and fingerprints in the clear, fails every card
-- look-up (an error, so no answer) instead of answering 14 or 94.
ALTER TABLE cards RENAME COLUMN pan TO pan_clear;
ALTER TABLE cards
    ALTER COLUMN pan_clear DROP NOT NULL,
    ADD COLUMN pan_hash bytea CONSTRAINT cards_pan_hash_key UNIQUE CHECK (length(pan_hash) = 32),
    ADD COLUMN pan_sealed bytea,
    ADD COLUMN pan_key integer,
    -- First six and last four digits, for showing and for ops' searches.
    ADD COLUMN pan_masked text CHECK (pan_masked ~ '^[0-9]{6}\*{2,9}[0-9]{4}$'),
    ADD CONSTRAINT cards_pan_sealed CHECK (
        (pan_hash IS NULL) = (pan_sealed IS NULL) AND (pan_sealed IS NULL) = (pan_key IS NULL)
        AND (pan_key IS NULL) = (pan_masked IS NULL)),
    ADD CONSTRAINT cards_pan_once CHECK ((pan_clear IS NULL) <> (pan_sealed IS NULL));
CREATE INDEX cards_by_masked_pan ON cards (right(pan_masked, 4), left(pan_masked, 6));

-- A request's response is sealed under sealed_by, and its fingerprint
-- keyed; a request stored before either has sealed_by NULL.
-- NOT VALID: the new column is empty, and checking it would hold the
-- table's lock for a scan of every request; new rows are checked.
ALTER TABLE requests ADD COLUMN sealed_by integer;
ALTER TABLE requests ADD CONSTRAINT requests_sealed_by CHECK (sealed_by > 0) NOT VALID;

-- An answered request is final, but may be sealed again under another data
-- key: its response changes form, and a fingerprint stored before
-- fingerprints were keyed is keyed; nothing else changes.
CREATE OR REPLACE FUNCTION guard_request_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id <> OLD.id OR NEW.txn_key <> OLD.txn_key OR NEW.bank <> OLD.bank OR NEW.mti_class <> OLD.mti_class
       OR (NEW.fingerprint <> OLD.fingerprint AND NOT (OLD.sealed_by IS NULL AND NEW.sealed_by IS NOT NULL))
       OR (OLD.sealed_by IS NOT NULL AND NEW.sealed_by IS NULL) THEN
        RAISE EXCEPTION 'request % cannot change what it is', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.state = 'answered' AND NEW.sealed_by IS DISTINCT FROM OLD.sealed_by THEN
        IF (to_jsonb(NEW) - 'response' - 'sealed_by' - 'fingerprint') <> (to_jsonb(OLD) - 'response' - 'sealed_by' - 'fingerprint')
           OR NEW.sealed_by <= coalesce(OLD.sealed_by, 0)
           OR NOT EXISTS (SELECT 1 FROM data_keys WHERE id = NEW.sealed_by AND purpose = 'data') THEN
            RAISE EXCEPTION 'request % is answered: it may only be sealed again, under a newer data key, changing nothing else', OLD.id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN NEW;
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
