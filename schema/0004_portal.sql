-- Portal state that is not ledger history: credentials, sessions and rate-limit windows.
-- Passwords stay out of the immutable log on purpose: a hash must be replaceable and
-- erasable, and events are neither.
CREATE TABLE credentials (
    user_id       uuid        PRIMARY KEY,
    password_hash text        NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Server-side sessions: the cookie holds a random secret, the table only its sha256.
CREATE TABLE sessions (
    id_hash      bytea       PRIMARY KEY,
    user_id      uuid        NOT NULL,
    csrf_token   text        NOT NULL,
    method       text        NOT NULL,   -- password | gitlab
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id) WHERE ended_at IS NULL;

-- Fixed-window counters shared by every portal process.
CREATE TABLE rate_limits (
    bucket       text        NOT NULL,
    window_start timestamptz NOT NULL,
    hits         int         NOT NULL,
    PRIMARY KEY (bucket, window_start)
);

-- Pending GitLab sign-ins: state, nonce and PKCE verifier, used once.
CREATE TABLE oauth_states (
    state        text        PRIMARY KEY,
    nonce        text        NOT NULL,
    verifier     text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    used_at      timestamptz
);

GRANT SELECT, INSERT, UPDATE ON credentials, sessions TO rcc_app;
-- Used and expired sign-in states are purged by the portal now and then.
GRANT SELECT, INSERT, UPDATE, DELETE ON oauth_states TO rcc_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON rate_limits TO rcc_app;
