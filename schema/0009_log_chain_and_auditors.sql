-- Tamper evidence over the whole log (docs/AUDIT.md).
--
-- The per-stream hash (0001) proves each stream's history, but not the order of the
-- global log nor that a stream's newest events are still there. The log chain does:
-- event number seq in commit order (tx_id, position) gets
--     chain = sha256(previous chain || seq || position || tx_id || the event's hash)
-- (src/rcc/store/hashing.py `log_link`). Commit order is only final once no older
-- transaction can still commit, so the chain is not computed by the append function
-- (which would slow every write and still not know the order) but afterwards, by
-- whoever extends it (`rcc audit anchor`, the anchor worker), over commit-safe reads.
-- Signed anchors of its head, kept outside the database, are what an attacker with
-- full database access cannot recompute.
CREATE TABLE log_chain (
    seq       bigint PRIMARY KEY CHECK (seq >= 1),
    position  bigint NOT NULL UNIQUE,
    tx_id     bigint NOT NULL,  -- xid8 as a number, like the followers' checkpoints
    chain     bytea  NOT NULL
);

CREATE FUNCTION rcc_refuse_chain_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the log chain is append-only: % refused', TG_OP
        USING ERRCODE = 'RC002';
END
$$;

-- Like the events themselves: a link once written is never rewritten.
CREATE TRIGGER log_chain_no_update_delete BEFORE UPDATE OR DELETE ON log_chain
    FOR EACH ROW EXECUTE FUNCTION rcc_refuse_chain_change();
CREATE TRIGGER log_chain_no_truncate BEFORE TRUNCATE ON log_chain
    FOR EACH STATEMENT EXECUTE FUNCTION rcc_refuse_chain_change();

-- The service's anchor worker extends the chain; nobody changes it.
GRANT SELECT, INSERT ON log_chain TO rcc_app;

-- Auditors read the log, balances as of any moment and the anchors, and write nothing.
ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_role_check;
ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_role_check
    CHECK (role IN ('admin', 'service', 'user', 'auditor'));
