-- Organisations (issue 13): members with roles, invitations, budgets, a shared wallet.
-- The org's facts are events on `org-<id>`; its wallet is `wallet-<org id>` (owner_kind
-- 'org'). What is here is either a lookup written with those events, or read models.

-- An invitation is accepted by its token, which is shown once and never stored: this
-- row maps the token's sha256 to its org, written in the transaction that invites.
-- The org's events have the last word (an accepted or expired invitation leaves the
-- org's state), so a row that outlives its invitation lets nobody in.
CREATE TABLE org_invitation_tokens (
    token_hash     text PRIMARY KEY,
    org_id         text NOT NULL,
    invitation_id  text NOT NULL
);
GRANT SELECT, INSERT ON org_invitation_tokens TO rcc_app;

-- Read models of projections/orgs.py (rebuilt by `rcc replay --projection orgs`).
CREATE TABLE orgs (
    id                  text        PRIMARY KEY,
    name                text        NOT NULL,
    owner_user_id       text        NOT NULL,
    wallet_id           text        NOT NULL,
    monthly_budget_rcc  bigint,
    member_count        int         NOT NULL,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX orgs_page ON orgs (created_at DESC, id DESC);

-- Every membership that ever was; `active` false once the member left or was removed.
CREATE TABLE org_members (
    org_id              text        NOT NULL,
    user_id             text        NOT NULL,
    email               text        NOT NULL,
    role                text        NOT NULL,
    monthly_budget_rcc  bigint,
    active              boolean     NOT NULL,
    joined_at           timestamptz NOT NULL,
    left_at             timestamptz,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_members_user ON org_members (user_id, joined_at DESC, org_id DESC);

CREATE TABLE org_invitations (
    id          text        PRIMARY KEY,
    org_id      text        NOT NULL,
    email       text        NOT NULL,
    role        text        NOT NULL,
    status      text        NOT NULL,  -- pending, accepted or expired
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX org_invitations_org ON org_invitations (org_id, created_at DESC, id DESC);

INSERT INTO projection_checkpoints (name) VALUES ('orgs') ON CONFLICT (name) DO NOTHING;
GRANT SELECT, INSERT, UPDATE, DELETE ON orgs, org_members, org_invitations TO rcc_app;

-- An org's jobs and ledger are read by wallet (the member filter joins the jobs).
CREATE INDEX jobs_wallet_page ON jobs (wallet_id, created_at DESC, id DESC);
CREATE INDEX rcc_ledger_wallet_page ON rcc_ledger (wallet_id, created_at DESC, id DESC);
