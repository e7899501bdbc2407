-- Billing states and outbound webhooks (issue 14, second half; docs/WEBHOOKS.md).
--
-- billing_states: what the billing follower (a subscriber of the one log follower)
-- knows of each wallet: its balance as the sum of its ledger deltas and the state it
-- last recorded. It is written in the follower's batch transaction together with the
-- BILLING_STATE_CHANGED events and the checkpoint, so each change is recorded once.
CREATE TABLE billing_states (
    wallet_id      text        PRIMARY KEY,
    balance        bigint      NOT NULL,
    state          text        NOT NULL CHECK (state IN ('healthy', 'low_balance', 'depleted')),
    last_position  bigint      NOT NULL,
    updated_at     timestamptz NOT NULL
);

-- Endpoints admins registered. The registration is an event too (without the secret:
-- the log is readable by auditors and kept forever); the secret lives here only.
CREATE TABLE webhook_endpoints (
    id          text        PRIMARY KEY,
    url         text        NOT NULL,
    events      text[]      NOT NULL,
    secret      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);

-- The outbox: one row per (endpoint, message), written by the webhook follower in its
-- batch transaction (so a message is queued exactly once per endpoint), sent at least
-- once by the sender. `message_id` is the `webhook-id` header: the same on every
-- attempt, so receivers de-duplicate. A sender claims a row by moving
-- `next_attempt_at` past its lease before it sends: a sender killed mid-delivery
-- leaves the row due again once the lease is over, never lost.
CREATE TABLE webhook_deliveries (
    id               bigserial   PRIMARY KEY,
    endpoint_id      text        NOT NULL REFERENCES webhook_endpoints (id),
    message_id       text        NOT NULL,
    type             text        NOT NULL,
    payload          text        NOT NULL,  -- the exact body sent (and signed)
    status           text        NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status      integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    UNIQUE (endpoint_id, message_id)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id DESC);

-- Lots already announced as expiring (credits.expiring, 7 days ahead): one notice per lot.
CREATE TABLE webhook_expiring_notices (
    wallet_id    text        NOT NULL,
    lot          text        NOT NULL,
    noticed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (wallet_id, lot)
);

GRANT SELECT, INSERT, UPDATE ON billing_states, webhook_endpoints, webhook_deliveries,
    webhook_expiring_notices TO rcc_app;
GRANT USAGE ON SEQUENCE webhook_deliveries_id_seq TO rcc_app;

-- Auto top-up (docs/WEBHOOKS.md): each user's choice and saved card, written with the
-- AUTO_TOPUP_* events of the stream `autotopup-<user>` in the same transaction.
CREATE TABLE auto_topups (
    user_id         text        PRIMARY KEY,
    enabled         boolean     NOT NULL DEFAULT false,
    threshold_rcc   bigint      NOT NULL DEFAULT 0,
    pack            text        NOT NULL DEFAULT '',
    customer_id     text,
    payment_method  text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per crossing below a user's threshold (`<wallet>:<position>`), inserted by
-- the billing follower in its batch (so once per crossing); the charger creates one
-- off-session PaymentIntent for it under the Stripe idempotency key of the crossing.
CREATE TABLE auto_topup_charges (
    crossing        text        PRIMARY KEY,
    user_id         text        NOT NULL,
    pack            text        NOT NULL,
    status          text        NOT NULL DEFAULT 'due'
                                CHECK (status IN ('due', 'sending', 'sent', 'declined', 'failed')),
    payment_intent  text,
    error           text,
    claimed_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auto_topup_charges_due ON auto_topup_charges (created_at) WHERE status IN ('due', 'sending');
CREATE INDEX auto_topup_charges_by_user ON auto_topup_charges (user_id, created_at DESC);

GRANT SELECT, INSERT, UPDATE ON auto_topups, auto_topup_charges TO rcc_app;
