-- Organisations pay as their own Stripe Customer, and have auto top-up (h14; issues 13
-- and 14; docs/ORGS.md).

-- org_stripe_customers: the Stripe Customer each organisation pays as, folded from the
-- ORG_STRIPE_CUSTOMER_SET events of the `org-<id>` streams by projections/org_billing.py
-- (rebuilt by `rcc replay`). The org's head has the last word; this is for reading.
CREATE TABLE org_stripe_customers (
    org_id       text        PRIMARY KEY,
    customer_id  text        NOT NULL,
    set_by       text        NOT NULL DEFAULT '',
    set_at       timestamptz NOT NULL
);
INSERT INTO follower_checkpoints (name) VALUES ('org_billing') ON CONFLICT (name) DO NOTHING;
GRANT SELECT, INSERT, UPDATE, DELETE ON org_stripe_customers TO rcc_app;

-- Auto top-up for an organisation's wallet: the row of auto_topups (and of
-- auto_topup_charges) is keyed by the wallet's owner, a user's id or an org's id (a
-- wallet's id is its owner's); `owner_kind` says which, and `buyer_id` is the owner or
-- admin who turned it on, recorded as the buyer of the org's off-session payments.
ALTER TABLE auto_topups
    ADD COLUMN owner_kind text NOT NULL DEFAULT 'user' CHECK (owner_kind IN ('user', 'org')),
    ADD COLUMN buyer_id   text;
