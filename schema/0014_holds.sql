-- Holds and the service credits API (issue 12, h1).
--
-- hold_timeouts: when each service hold voids itself. A row is written in the
-- transaction that authorizes the hold and closed in the one that ends it. The
-- scheduler picks open rows whose time has come and voids each hold under the
-- idempotency key `hold-timeout:<id>`; the hold's own stream has the last word (an
-- ended hold refuses a second end), so any number of schedulers void a hold once.
CREATE TABLE hold_timeouts (
    hold_id    text        PRIMARY KEY,
    wallet_id  text        NOT NULL,
    due_at     timestamptz NOT NULL,
    done_at    timestamptz
);

CREATE INDEX hold_timeouts_due ON hold_timeouts (due_at) WHERE done_at IS NULL;
GRANT SELECT, INSERT, UPDATE ON hold_timeouts TO rcc_app;

-- Service tokens carry scopes (credits:read, credits:hold, credits:usage). Existing
-- tokens get none: they keep what their role allowed and gain nothing.
ALTER TABLE api_tokens ADD COLUMN scopes text[] NOT NULL DEFAULT '{}';
