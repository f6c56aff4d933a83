-- Reconciliation: each request's business date, the runs that match a
-- bank's or the fund company's daily file against the ledger, the cases
-- (breaks) they find, and the adjustments operators resolve them with.

-- The business date a request belongs to: DE15 when the bank sent it,
-- else its arrival and the bank's cutover. Requests stored before dates
-- were kept belong to their arrival's date in Asia/Shanghai (the default
-- cutover, midnight). History is rewritten here only to add what it did
-- not record, with its guard set aside.
ALTER TABLE requests ADD COLUMN business_date date;
ALTER TABLE requests DISABLE TRIGGER requests_guard_update;
UPDATE requests SET business_date = (created_at AT TIME ZONE 'Asia/Shanghai')::date;
ALTER TABLE requests ENABLE TRIGGER requests_guard_update;
ALTER TABLE requests ALTER COLUMN business_date SET NOT NULL;
-- Requests are stored in about the order of their dates: a block range
-- index finds a day's in a few pages and costs an insert next to nothing.
CREATE INDEX requests_by_business_date ON requests USING brin (business_date);

-- The fund company's daily file lists the orders of a day: redemptions by
-- the day of their quota, subscriptions by the day of their sweep.
CREATE INDEX redemption_orders_by_day ON redemption_orders (quota_day);
CREATE INDEX sweeps_by_day ON sweeps (day);

-- One run of a daily file against the ledger. A later run for the same
-- source, bank and date (a corrected file) supersedes it.
CREATE TABLE recon_runs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text NOT NULL CHECK (source IN ('bank', 'fund')),
    bank            text NOT NULL, -- '' for the fund company
    business_date   date NOT NULL,
    format          text NOT NULL,
    file_sha256     bytea NOT NULL CHECK (length(file_sha256) = 32),
    rows            bigint NOT NULL CHECK (rows >= 0),
    matched         bigint NOT NULL CHECK (matched >= 0),
    missing_here    bigint NOT NULL CHECK (missing_here >= 0),
    missing_there   bigint NOT NULL CHECK (missing_there >= 0),
    amount_mismatch bigint NOT NULL CHECK (amount_mismatch >= 0),
    state_mismatch  bigint NOT NULL DEFAULT 0 CHECK (state_mismatch >= 0),
    settled         bigint NOT NULL DEFAULT 0 CHECK (settled >= 0),
    review          bigint NOT NULL DEFAULT 0 CHECK (review >= 0),
    run_by          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT recon_runs_bank CHECK ((source = 'fund') = (bank = ''))
);
CREATE INDEX recon_runs_by_day ON recon_runs (source, bank, business_date, id);

-- A break: what one side has and the other has not, or has otherwise.
-- One case per break, whichever run finds it again.
CREATE TABLE recon_cases (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text NOT NULL CHECK (source IN ('bank', 'fund')),
    bank            text NOT NULL,
    business_date   date NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('missing_here', 'missing_there', 'amount_mismatch', 'state_mismatch')),
    -- The transaction's identity as the file gives it (or would): a
    -- JSON array of acquirer, terminal, STAN, RRN and transmission date
    -- and time, or the fund order's id; and the break's figures (ours,
    -- theirs, and a count for the same break found twice). A break whose
    -- figures change is another case.
    ident           text NOT NULL CHECK (ident <> ''),
    figures         text NOT NULL,
    request_id      bigint REFERENCES requests (id),
    order_id        text,
    card_id         bigint REFERENCES cards (id),
    currency        char(3),
    ours            bigint,  -- what stands in the ledger, minor units
    theirs          bigint,  -- what the file says
    detail          jsonb NOT NULL DEFAULT '{}',
    state           text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'adjusted', 'written_off', 'matched')),
    opened_run      bigint NOT NULL REFERENCES recon_runs (id),
    last_run        bigint NOT NULL REFERENCES recon_runs (id),
    -- A case an operator closed that a later run no longer finds: what
    -- was done about it needs looking at again.
    superseded_by   bigint REFERENCES recon_runs (id),
    resolved_by     text,
    reason          text,
    -- A write-off above the four-eyes amount is asked for by one operator
    -- and made by another.
    write_off_by     text,
    write_off_reason text,
    opened_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz,
    CONSTRAINT recon_cases_once UNIQUE (source, bank, business_date, kind, ident, figures),
    CONSTRAINT recon_cases_resolved CHECK ((state = 'open') = (resolved_at IS NULL)),
    CONSTRAINT recon_cases_resolved_by CHECK (state IN ('open', 'matched') OR (resolved_by IS NOT NULL AND reason IS NOT NULL)),
    CONSTRAINT recon_cases_four_eyes CHECK (state <> 'written_off' OR write_off_by IS NULL OR write_off_by <> resolved_by),
    CONSTRAINT recon_cases_bank CHECK ((source = 'fund') = (bank = ''))
);
CREATE INDEX recon_cases_open ON recon_cases (opened_at) WHERE state = 'open';
CREATE INDEX recon_cases_by_day ON recon_cases (source, bank, business_date);

-- An operator's adjustment of a case: one ordinary double-entry transfer,
-- posted when made or, above the four-eyes amount, once a second
-- operator approves it.
CREATE TABLE adjustments (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id         bigint NOT NULL REFERENCES recon_cases (id),
    card_id         bigint NOT NULL REFERENCES cards (id),
    debit_account   bigint NOT NULL REFERENCES accounts (id),
    credit_account  bigint NOT NULL REFERENCES accounts (id),
    currency        char(3) NOT NULL,
    amount          bigint NOT NULL CHECK (amount > 0),
    reason          text NOT NULL CHECK (length(reason) BETWEEN 3 AND 500),
    requested_by    text NOT NULL CHECK (requested_by <> ''),
    needs_approval  boolean NOT NULL,
    approved_by     text,
    -- Who rejected it, and why, for one rejected.
    rejected_by     text,
    rejection       text,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'posted', 'rejected')),
    transfer_id     bigint CONSTRAINT adjustments_transfer_key UNIQUE REFERENCES transfers (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    decided_at      timestamptz,
    CONSTRAINT adjustments_two_accounts CHECK (debit_account <> credit_account),
    CONSTRAINT adjustments_four_eyes CHECK (approved_by IS NULL OR approved_by <> requested_by),
    CONSTRAINT adjustments_approved CHECK (state <> 'posted' OR NOT needs_approval OR approved_by IS NOT NULL),
    CONSTRAINT adjustments_posted CHECK ((state = 'posted') = (transfer_id IS NOT NULL)),
    CONSTRAINT adjustments_decided CHECK ((state = 'pending') = (decided_at IS NULL)),
    CONSTRAINT adjustments_rejected CHECK ((state = 'rejected') = (rejected_by IS NOT NULL AND rejection IS NOT NULL))
);
-- A case has at most one adjustment waiting, and at most one posted.
CREATE UNIQUE INDEX adjustments_one_pending ON adjustments (case_id) WHERE state = 'pending';
CREATE UNIQUE INDEX adjustments_one_posted ON adjustments (case_id) WHERE state = 'posted';

-- What is done stays done: a posted or rejected adjustment, a resolved
-- case, are never changed again, and nothing here is deleted.
CREATE FUNCTION guard_adjustment_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state <> 'pending' THEN
        RAISE EXCEPTION 'adjustment % is %', OLD.id, OLD.state USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (to_jsonb(NEW) - 'state' - 'approved_by' - 'transfer_id' - 'decided_at' - 'rejected_by' - 'rejection')
       <> (to_jsonb(OLD) - 'state' - 'approved_by' - 'transfer_id' - 'decided_at' - 'rejected_by' - 'rejection') THEN
        RAISE EXCEPTION 'adjustment % cannot change what it is', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER adjustments_guard BEFORE UPDATE ON adjustments FOR EACH ROW EXECUTE FUNCTION guard_adjustment_update();
CREATE TRIGGER adjustments_no_delete BEFORE DELETE ON adjustments FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER adjustments_no_truncate BEFORE TRUNCATE ON adjustments FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate();

CREATE FUNCTION guard_case_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state IN ('adjusted', 'written_off')
       AND to_jsonb(NEW) - 'last_run' - 'superseded_by' <> to_jsonb(OLD) - 'last_run' - 'superseded_by' THEN
        RAISE EXCEPTION 'case % is %', OLD.id, OLD.state USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.id <> OLD.id OR NEW.source <> OLD.source OR NEW.bank <> OLD.bank OR NEW.business_date <> OLD.business_date
       OR NEW.kind <> OLD.kind OR NEW.ident <> OLD.ident OR NEW.figures <> OLD.figures OR NEW.opened_run <> OLD.opened_run THEN
        RAISE EXCEPTION 'case % cannot change what it is', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.state = 'adjusted' AND NOT EXISTS (SELECT 1 FROM adjustments WHERE case_id = NEW.id AND state = 'posted') THEN
        RAISE EXCEPTION 'case % has no posted adjustment', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER recon_cases_guard BEFORE UPDATE ON recon_cases FOR EACH ROW EXECUTE FUNCTION guard_case_update();
CREATE TRIGGER recon_cases_no_delete BEFORE DELETE ON recon_cases FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER recon_cases_no_truncate BEFORE TRUNCATE ON recon_cases FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate();
CREATE TRIGGER recon_runs_no_delete BEFORE DELETE ON recon_runs FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER recon_runs_no_truncate BEFORE TRUNCATE ON recon_runs FOR EACH STATEMENT EXECUTE FUNCTION refuse_truncate();
