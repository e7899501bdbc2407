-- Read models (issue 3): tables derived from the event log by the projectors in
-- src/rcc/projector, one group per module in projections/. Everything here can be
-- dropped and rebuilt from position 0 (`rcc replay`); nothing here is a source of truth.
--
-- Rules every read-model table follows, so `rcc replay` can rebuild it beside the live
-- one (CREATE TABLE ... LIKE) and swap it in by moving schemas:
--   * no sequences or identity columns: ids come from the events (a position, an id);
--   * no foreign keys between read-model tables (each projection rebuilds on its own);
--   * values come from the events only (recorded_at, never now()), so a replay
--     reproduces every row exactly.

-- Where each projection is in the commit-safe order of the log. Written in the same
-- transaction as the projection's rows: a batch lands with its checkpoint or not at all.
CREATE TABLE projection_checkpoints (
    name        text        PRIMARY KEY,
    tx_id       xid8        NOT NULL DEFAULT '0',
    position    bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    rebuilt_at  timestamptz
);
INSERT INTO projection_checkpoints (name) VALUES
    ('balances'), ('ledger'), ('jobs'), ('payments'), ('users'), ('dashboard'), ('ops_log');

-- balances: one row per wallet.
CREATE TABLE wallet_balances (
    wallet_id             text        PRIMARY KEY,
    owner_kind            text        NOT NULL,
    owner_id              text        NOT NULL,
    balance               bigint      NOT NULL DEFAULT 0,
    lifetime_granted      bigint      NOT NULL DEFAULT 0,  -- signup, top-up, subscription
    lifetime_consumed     bigint      NOT NULL DEFAULT 0,  -- reserves minus releases
    lifetime_adjusted     bigint      NOT NULL DEFAULT 0,  -- MANUAL_ADJUST, signed
    lifetime_clawed_back  bigint      NOT NULL DEFAULT 0,
    jobs_in_flight        int         NOT NULL DEFAULT 0,
    last_position         bigint      NOT NULL,
    updated_at            timestamptz NOT NULL
);
CREATE INDEX wallet_balances_owner ON wallet_balances (owner_kind, owner_id);
-- Jobs created and not yet ended, with their wallet (job events name only the job).
CREATE TABLE wallet_open_jobs (
    job_id     text PRIMARY KEY,
    wallet_id  text NOT NULL
);

-- ledger: the PRD's rcc_ledger, one row per ledger event; id is the event's position.
CREATE TABLE rcc_ledger (
    id             bigint      PRIMARY KEY,
    wallet_id      text        NOT NULL,
    user_id        text,                  -- the wallet's owner when that is a user
    delta          bigint      NOT NULL,
    reason         text        NOT NULL,
    job_id         text,
    external_ref   text,
    actor          text,
    note           text,
    created_at     timestamptz NOT NULL
);
-- Pages are keyset-ordered by (created_at, id), newest first; reason filters get their own.
CREATE INDEX rcc_ledger_user_page ON rcc_ledger (user_id, created_at DESC, id DESC);
CREATE INDEX rcc_ledger_user_reason_page ON rcc_ledger (user_id, reason, created_at DESC, id DESC);
CREATE INDEX rcc_ledger_job ON rcc_ledger (job_id) WHERE job_id IS NOT NULL;
-- The owner of each wallet, for user_id (ledger events name only their wallet).
CREATE TABLE ledger_wallets (
    wallet_id   text PRIMARY KEY,
    owner_kind  text NOT NULL,
    owner_id    text NOT NULL
);

-- jobs: the PRD's jobs table.
CREATE TABLE jobs (
    id             text        PRIMARY KEY,
    user_id        text        NOT NULL,
    wallet_id      text        NOT NULL,
    type           text        NOT NULL,
    cost_rcc       int         NOT NULL,
    bypass         boolean     NOT NULL DEFAULT false,
    status         text        NOT NULL,
    duration_ms    bigint,
    output_uris    jsonb       NOT NULL DEFAULT '[]'::jsonb,
    error          text,
    metadata       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    backend        text,
    prompt_id      text,
    created_at     timestamptz NOT NULL,
    queued_at      timestamptz,
    started_at     timestamptz,
    ended_at       timestamptz,
    -- The job stream version that set the status: a status only moves forward.
    version        bigint      NOT NULL
);
CREATE INDEX jobs_user_page ON jobs (user_id, created_at DESC, id DESC);
CREATE INDEX jobs_status_page ON jobs (status, created_at DESC, id DESC);
CREATE INDEX jobs_page ON jobs (created_at DESC, id DESC);

-- payments: the PRD's payments table. Derived from grants and clawbacks until Stripe's
-- payment events exist (issue 5); those add handlers keyed by the same external_ref.
CREATE TABLE payments (
    id            bigint      PRIMARY KEY,  -- position of the event that opened the row
    user_id       text,
    wallet_id     text        NOT NULL,
    provider      text        NOT NULL,     -- stripe | manual
    type          text        NOT NULL,     -- subscription | topup | clawback
    amount        bigint,                   -- money in minor units, when known
    currency      text,
    credits_rcc   bigint      NOT NULL,
    status        text        NOT NULL,     -- paid | refunded | failed | ...
    external_ref  text,
    detail        text,                     -- the pack, the period, the shortfall
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX payments_page ON payments (created_at DESC, id DESC);
CREATE INDEX payments_user_page ON payments (user_id, created_at DESC, id DESC);
CREATE INDEX payments_external_ref ON payments (external_ref) WHERE external_ref IS NOT NULL;
CREATE TABLE payment_wallets (
    wallet_id   text PRIMARY KEY,
    owner_kind  text NOT NULL,
    owner_id    text NOT NULL
);

-- users: profile, balance, plan and activity for /me and /admin/users.
CREATE TABLE users (
    id                 text        PRIMARY KEY,
    email              text        NOT NULL,
    wallet_id          text        NOT NULL,
    is_admin           boolean     NOT NULL DEFAULT false,
    balance            bigint      NOT NULL DEFAULT 0,
    plan               text,
    plan_active_until  timestamptz,
    created_at         timestamptz NOT NULL,
    last_activity_at   timestamptz NOT NULL,
    -- The user stream version that set is_admin: an older change never overwrites it.
    version            bigint      NOT NULL
);
CREATE UNIQUE INDEX users_wallet ON users (wallet_id);
CREATE INDEX users_email ON users (email text_pattern_ops);
CREATE INDEX users_page ON users (created_at DESC, id DESC);
CREATE INDEX users_plan_active ON users (plan_active_until) WHERE plan_active_until IS NOT NULL;
-- Running counts, so the dashboard never counts the users table.
CREATE TABLE user_totals (
    id            int    PRIMARY KEY CHECK (id = 1),
    users         bigint NOT NULL DEFAULT 0,
    admins        bigint NOT NULL DEFAULT 0,
    with_balance  bigint NOT NULL DEFAULT 0
);

-- dashboard: counters per metric and hour (UTC), rolled up to days and weeks when
-- read, so the dashboard reads O(hours in the window) rows, never O(events). A new
-- metric is a new name, not a migration: later events (payments, models) feed it.
CREATE TABLE dashboard_hourly (
    metric  text        NOT NULL,
    hour    timestamptz NOT NULL,
    value   bigint      NOT NULL,
    PRIMARY KEY (metric, hour)
);
-- Counters that are states rather than rates (installed models, registered users).
CREATE TABLE dashboard_totals (
    metric  text   PRIMARY KEY,
    value   bigint NOT NULL
);

-- ops_log: the PRD's logs (user, ip, action, status, time) for admin, sign-in and
-- ComfyUI operations; id is the position of the event it came from. Every logged
-- operation is an event of its own; the command metadata adds the ip and the actor.
CREATE TABLE ops_log (
    id       bigint      PRIMARY KEY,
    at       timestamptz NOT NULL,
    user_id  text,
    actor    text,
    ip       text,
    action   text        NOT NULL,
    status   text        NOT NULL,
    detail   text        NOT NULL DEFAULT ''
);
CREATE INDEX ops_log_page ON ops_log (at DESC, id DESC);
CREATE INDEX ops_log_user_page ON ops_log (user_id, at DESC, id DESC);
CREATE INDEX ops_log_action_page ON ops_log (action, at DESC, id DESC);

-- The projectors and the portal run as rcc_app: they write read models, never events.
GRANT SELECT, UPDATE, INSERT ON projection_checkpoints TO rcc_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    wallet_balances, wallet_open_jobs, rcc_ledger, ledger_wallets, jobs, payments,
    payment_wallets, users, user_totals, dashboard_hourly, dashboard_totals, ops_log
    TO rcc_app;
