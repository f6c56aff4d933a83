-- Balances kept by statement: a statement that inserts many transfers or
-- holds (a group commit writes a batch's in one) changes each account it
-- touches once, in one UPDATE, instead of one PL/pgSQL call and one UPDATE
-- per row. What the schema refuses stays refused: a transfer naming an
-- unknown account or one in another currency, and (by the accounts' CHECK
-- constraints, on the summed change) any balance out of bounds.

DROP TRIGGER transfers_apply ON transfers;
DROP FUNCTION apply_transfer();

CREATE FUNCTION apply_transfers() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT s.transfer, s.account, s.currency, a.id IS NULL AS missing, a.currency AS account_currency INTO bad
    FROM (SELECT id AS transfer, debit_account AS account, currency FROM new_transfers
          UNION ALL
          SELECT id, credit_account, currency FROM new_transfers) s
    LEFT JOIN accounts a ON a.id = s.account
    WHERE a.id IS NULL OR a.currency <> s.currency
    LIMIT 1;
    IF FOUND AND bad.missing THEN
        RAISE EXCEPTION 'transfer % names unknown account %', bad.transfer, bad.account USING ERRCODE = 'foreign_key_violation';
    ELSIF FOUND THEN
        RAISE EXCEPTION 'transfer % in % touches account % in %', bad.transfer, bad.currency, bad.account, bad.account_currency
            USING ERRCODE = 'check_violation';
    END IF;
    -- Only card accounts keep a stored balance; system accounts' are
    -- derived from their transfers.
    UPDATE accounts a SET balance = a.balance + d.delta
    FROM (SELECT account, sum(delta) AS delta FROM (
              SELECT debit_account AS account, -amount AS delta FROM new_transfers
              UNION ALL
              SELECT credit_account, amount FROM new_transfers) m
          GROUP BY account) d
    WHERE a.id = d.account AND a.card_id IS NOT NULL AND d.delta <> 0;
    RETURN NULL;
END $$;
CREATE TRIGGER transfers_apply AFTER INSERT ON transfers REFERENCING NEW TABLE AS new_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION apply_transfers();

-- New holds add to their accounts' held amount by statement; a hold that
-- changes (captured, reduced, released, expired) still passes its row
-- trigger, which also refuses any change but its remaining amount and
-- state.
DROP TRIGGER holds_apply ON holds;
CREATE FUNCTION apply_new_holds() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE accounts a SET held = a.held + h.held
    FROM (SELECT account_id, sum(remaining) AS held FROM new_holds GROUP BY account_id) h
    WHERE a.id = h.account_id AND h.held <> 0;
    RETURN NULL;
END $$;
CREATE TRIGGER holds_apply_new AFTER INSERT ON holds REFERENCING NEW TABLE AS new_holds
    FOR EACH STATEMENT EXECUTE FUNCTION apply_new_holds();
CREATE TRIGGER holds_apply AFTER UPDATE ON holds FOR EACH ROW EXECUTE FUNCTION apply_hold();

-- The guard on accounts runs its PL/pgSQL only when it may refuse: a
-- change made outside the ledger's triggers, or one to what an account
-- is.
DROP TRIGGER accounts_guard_update ON accounts;
CREATE TRIGGER accounts_guard_update BEFORE UPDATE ON accounts FOR EACH ROW
    WHEN (pg_trigger_depth() = 0 OR NEW.id <> OLD.id OR NEW.kind <> OLD.kind OR NEW.currency <> OLD.currency
          OR NEW.card_id IS DISTINCT FROM OLD.card_id)
    EXECUTE FUNCTION guard_balance_update();

