-- Payments (issue 5): the durable schedule of the annual plans' monthly grants, and the
-- columns payment events add to the payments and users read models.

-- One row per later month (1..11) of a paid annual period, written in the same
-- transaction as the PaymentSucceeded that made it. A month's grant marks its row in
-- its own transaction (granted_at); a subscription's end or a reversal closes the rest
-- (cancelled_at). Not a read model: it is the scheduler's durable work list, and the
-- payment stream's state still has the last word on whether a month is granted.
CREATE TABLE subscription_schedule (
    payment_key      text        NOT NULL,
    month_index      int         NOT NULL CHECK (month_index >= 1),
    subscription_id  text        NOT NULL,
    period_start     timestamptz NOT NULL,
    due_at           timestamptz NOT NULL,
    user_id          text        NOT NULL,
    credits          bigint      NOT NULL CHECK (credits > 0),
    granted_at       timestamptz,
    cancelled_at     timestamptz,
    PRIMARY KEY (payment_key, month_index),
    CHECK (granted_at IS NULL OR cancelled_at IS NULL)
);
-- The scheduler's question: which open months are due?
CREATE INDEX subscription_schedule_open ON subscription_schedule (due_at)
    WHERE granted_at IS NULL AND cancelled_at IS NULL;
CREATE INDEX subscription_schedule_subscription ON subscription_schedule (subscription_id);
GRANT SELECT, INSERT, UPDATE ON subscription_schedule TO rcc_app;

-- payments: a Stripe payment is one row, keyed by its payment key, whose status follows
-- its events; what was granted, clawed back and left as a shortfall is shown beside it.
ALTER TABLE payments
    ADD COLUMN payment_key         text,
    ADD COLUMN credits_granted_rcc bigint NOT NULL DEFAULT 0,
    ADD COLUMN clawed_back_rcc     bigint NOT NULL DEFAULT 0,
    ADD COLUMN shortfall_rcc       bigint NOT NULL DEFAULT 0,
    ADD COLUMN refunded_amount     bigint NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX payments_payment_key ON payments (payment_key) WHERE payment_key IS NOT NULL;
CREATE INDEX payments_status_page ON payments (status, created_at DESC, id DESC);

-- users: a failed or refused payment flags the user until a payment succeeds; the plan
-- follows the subscription that set it (so its end ends that plan, not a newer one).
ALTER TABLE users
    ADD COLUMN payment_issue     text,
    ADD COLUMN payment_issue_at  timestamptz,
    ADD COLUMN subscription_id   text;
CREATE INDEX users_payment_issue ON users (payment_issue_at DESC) WHERE payment_issue IS NOT NULL;
