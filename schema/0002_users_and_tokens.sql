-- Uniqueness that events alone cannot give: one user per email. The row is written in
-- the same transaction as the UserRegistered event, so a refused duplicate writes nothing.
CREATE TABLE user_emails (
    email    text PRIMARY KEY,
    user_id  uuid NOT NULL UNIQUE
);

-- Bearer tokens. Only the sha256 of the secret is kept: a leaked table opens nothing.
CREATE TABLE api_tokens (
    id          uuid        PRIMARY KEY,
    secret_hash bytea       NOT NULL UNIQUE,
    role        text        NOT NULL CHECK (role IN ('admin', 'service', 'user')),
    user_id     uuid,
    name        text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

GRANT SELECT, INSERT ON user_emails TO rcc_app;
GRANT SELECT, INSERT, UPDATE ON api_tokens TO rcc_app;
