-- Issue 12: the `lots` read model, and `rcc_read`, the SQL read interface for internal
-- services (reporting, analytics, a BI tool). docs/READ_API.md documents every column.

-- lots: one row per lot of every wallet, from the lot events (the rules of 0003 hold:
-- no sequences, no foreign keys, values from the events only).
CREATE TABLE lots (
    wallet_id      text        NOT NULL,
    lot_id         text        NOT NULL,  -- L1, L2, ... per wallet
    source         text        NOT NULL,  -- signup, topup, subscription, manual, migrated, release, rollover
    amount         bigint      NOT NULL,
    remaining      bigint      NOT NULL,
    priority       int         NOT NULL,
    granted_at     timestamptz NOT NULL,
    expires_at     timestamptz,
    ref            text,
    expired_at     timestamptz,           -- when its CREDITS_EXPIRED was recorded
    last_position  bigint      NOT NULL,
    PRIMARY KEY (wallet_id, lot_id)
);
-- A wallet's live lots, in spending order (priority, soonest expiry, none last, oldest).
CREATE INDEX lots_wallet_spending ON lots (wallet_id, priority, expires_at, granted_at)
    WHERE remaining > 0;
GRANT SELECT, INSERT, UPDATE, DELETE ON lots TO rcc_app;
-- From position 0: on an existing database the projector builds it from the whole log.
INSERT INTO follower_checkpoints (name, kind) VALUES ('lots', 'projection')
    ON CONFLICT (name) DO NOTHING;

-- The reader: may read the views of rcc_read and nothing else. NOLOGIN here; `rcc
-- migrate` gives it LOGIN with RCC_READER_PASSWORD when that is set. A role is global
-- to the server, so two databases migrating at once may race to create it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rcc_reader') THEN
        CREATE ROLE rcc_reader NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created by a concurrent migration of another database
END
$$;

-- rcc_read.balances sums a wallet's open jobs (held_rcc): find them by wallet.
CREATE INDEX wallet_open_jobs_wallet ON wallet_open_jobs (wallet_id);

CREATE SCHEMA rcc_read;
-- Views run with their owner's rights, so the reader needs nothing on the tables.
REVOKE ALL ON SCHEMA rcc_read FROM PUBLIC;

-- Rule for these views: they only ever gain columns (appended at the end); a change
-- that drops, renames or retypes a column is a new view with a new name. `rcc replay`
-- recreates every view over the tables it swaps in (rcc.projector.replay).

-- Per wallet: what can be spent now, what open jobs hold, the next expiry.
CREATE VIEW rcc_read.balances AS
SELECT b.wallet_id,
       b.owner_kind,
       b.owner_id,
       -- Lots past their time count for nothing, even before their CREDITS_EXPIRED.
       b.balance - COALESCE((SELECT sum(l.remaining) FROM public.lots l
                              WHERE l.wallet_id = b.wallet_id AND l.remaining > 0
                                AND l.expires_at <= now()), 0)::bigint AS balance_rcc,
       COALESCE((SELECT sum(j.cost_rcc) FROM public.wallet_open_jobs o
                   JOIN public.jobs j ON j.id = o.job_id
                  WHERE o.wallet_id = b.wallet_id AND NOT j.bypass), 0)::bigint AS held_rcc,
       n.expires_at AS next_expiry_at,
       COALESCE(n.amount, 0)::bigint AS next_expiry_rcc,
       b.lifetime_granted AS lifetime_granted_rcc,
       b.lifetime_consumed AS lifetime_consumed_rcc,
       b.lifetime_adjusted AS lifetime_adjusted_rcc,
       b.lifetime_clawed_back AS lifetime_clawed_back_rcc,
       b.jobs_in_flight,
       b.last_position,
       b.updated_at
  FROM public.wallet_balances b
  LEFT JOIN LATERAL (
       SELECT l.expires_at, sum(l.remaining) AS amount FROM public.lots l
        WHERE l.wallet_id = b.wallet_id AND l.remaining > 0 AND l.expires_at > now()
        GROUP BY l.expires_at ORDER BY l.expires_at LIMIT 1) n ON true;

CREATE VIEW rcc_read.lots AS
SELECT l.wallet_id,
       l.lot_id,
       l.source,
       l.amount AS amount_rcc,
       l.remaining AS remaining_rcc,
       l.priority,
       l.granted_at,
       l.expires_at,
       l.ref,
       l.expired_at,
       CASE WHEN l.expired_at IS NOT NULL OR l.expires_at <= now() THEN 'expired'
            WHEN l.remaining = 0 THEN 'spent'
            ELSE 'live' END AS status
  FROM public.lots l;

CREATE VIEW rcc_read.ledger AS
SELECT e.id,
       e.wallet_id,
       e.user_id,
       e.delta AS delta_rcc,
       e.reason,
       e.job_id,
       e.external_ref,
       e.actor,
       e.note,
       e.created_at
  FROM public.rcc_ledger e;

CREATE VIEW rcc_read.jobs AS
SELECT j.id,
       j.user_id,
       j.wallet_id,
       j.type,
       j.cost_rcc,
       j.bypass,
       j.status,
       j.duration_ms,
       j.error,
       j.backend,
       j.created_at,
       j.queued_at,
       j.started_at,
       j.ended_at
  FROM public.jobs j;

CREATE VIEW rcc_read.payments AS
SELECT p.id,
       p.user_id,
       p.wallet_id,
       p.provider,
       p.type,
       p.amount,
       p.currency,
       p.credits_rcc,
       p.status,
       p.external_ref,
       p.detail,
       p.credits_granted_rcc,
       p.clawed_back_rcc,
       p.shortfall_rcc,
       p.refunded_amount,
       p.created_at,
       p.updated_at
  FROM public.payments p;

GRANT USAGE ON SCHEMA rcc_read TO rcc_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA rcc_read TO rcc_reader;
