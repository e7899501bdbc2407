-- Two rules the database now keeps itself, behind the Python that already keeps them.

-- 1. No wallet head below zero. The Python decisions (wallet.debit, wallet.adjust,
-- wallet.claw_back) never produce a negative balance, but a bug there, a script
-- writing with rcc_append_v2 directly, or an operator's UPDATE would otherwise be
-- trusted. The head row's cached state is what every writer decides on, so refusing
-- a negative balance there stops the damage at the first write, whoever makes it.
-- Every wallet is guarded, admins' included: an admin's job is a zero-delta
-- ADMIN_BYPASS line, not a debit, so an admin wallet never needs to go below zero
-- either, and the wallet state does not (and should not) know whether its owner is an
-- admin today. Streams other than wallets, and heads whose state has no balance yet
-- (the append function inserts a head with '{}' and fills it in the same call), pass.
-- A CHECK rather than a trigger: it is evaluated in C on every head UPDATE, with no
-- function call on the hot wallet path.
ALTER TABLE streams ADD CONSTRAINT streams_wallet_balance_not_negative
    CHECK (stream_id NOT LIKE 'wallet-%' OR COALESCE((state->>'balance')::numeric, 0) >= 0);

-- 2. Workflows stored once. A job's ComfyUI workflow can be large and is often the same
-- for thousands of jobs; embedding it in every JobCreated would let any user grow the
-- immutable log at will. The event keeps the sha256 digest (covered by the event's
-- hash, so the link from event to body is tamper-evident) and the body lives here,
-- keyed by that digest and inserted if absent in the transaction that appends the
-- event. The body is kept as the exact canonical JSON bytes the digest was taken of
-- (not jsonb, which would re-format it), so the table proves its own addressing: the
-- CHECK refuses a body that is not what its digest names. The body must also be JSON
-- that jsonb can hold (no \u0000, valid UTF-8), as the embedded workflow had to be:
-- the adapter copies it into a jsonb column, and a body it cannot copy would wedge it.
-- A body can never change under its digest: the service may add and read, not update
-- or delete, and a trigger refuses those to everyone else too.
CREATE TABLE workflow_blobs (
    digest      bytea       PRIMARY KEY CHECK (digest = sha256(body)),
    body        bytea       NOT NULL
        CONSTRAINT workflow_blobs_body_is_json CHECK (convert_from(body, 'UTF8')::jsonb IS NOT NULL),
    bytes       integer     GENERATED ALWAYS AS (octet_length(body)) STORED,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION rcc_refuse_blob_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'workflow blobs are immutable: % refused', TG_OP
        USING ERRCODE = 'RC003';
END
$$;

CREATE TRIGGER workflow_blobs_no_update_delete BEFORE UPDATE OR DELETE ON workflow_blobs
    FOR EACH ROW EXECUTE FUNCTION rcc_refuse_blob_change();
CREATE TRIGGER workflow_blobs_no_truncate BEFORE TRUNCATE ON workflow_blobs
    FOR EACH STATEMENT EXECUTE FUNCTION rcc_refuse_blob_change();

GRANT SELECT, INSERT ON workflow_blobs TO rcc_app;
