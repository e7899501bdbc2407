-- Credit lots (issue 12): the durable list of lot expiries the scheduler works through.
--
-- A lot with an expiry gets a row here in the transaction that creates it (a grant, a
-- manual adjustment with expires_at, or a release that comes back as a new lot). The
-- scheduler picks the rows whose time has come and writes CREDITS_EXPIRED for each,
-- under the idempotency key `expire:<wallet>:<lot>`, then marks the row done. The
-- wallet's events have the last word: a lot that is gone or exhausted expires nothing,
-- so a row picked twice (two schedulers, a crash before marking it) doubles nothing.
-- The hot path (a job's reserve) never touches this table.
CREATE TABLE lot_expiries (
    wallet_id   text        NOT NULL,
    lot         text        NOT NULL,
    expires_at  timestamptz NOT NULL,
    done_at     timestamptz,
    PRIMARY KEY (wallet_id, lot)
);

CREATE INDEX lot_expiries_due ON lot_expiries (expires_at) WHERE done_at IS NULL;
GRANT SELECT, INSERT, UPDATE ON lot_expiries TO rcc_app;
