-- Cards are named outside the ledger by an opaque reference, never by
-- their PAN: a PAN in a URL ends up in proxies' and access logs.
ALTER TABLE cards ADD COLUMN ref text;
UPDATE cards SET ref = 'crd_' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 24);
ALTER TABLE cards
    ALTER COLUMN ref SET NOT NULL,
    ALTER COLUMN ref SET DEFAULT 'crd_' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 24),
    ADD CONSTRAINT cards_ref_key UNIQUE (ref),
    ADD CONSTRAINT cards_ref_format CHECK (ref ~ '^crd_[0-9a-f]{24}$');
