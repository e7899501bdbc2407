"""The fair order of waiting jobs: round-robin across payers, plan priority among equals.

A *payer* is the wallet a job is charged to (`JobCreated.wallet_id`): an organisation's
wallet for its members' org jobs, the user's own otherwise. So an organisation's fifty
members share one turn in each round, and a lone user is not starved by them.

Each waiting job gets a round: `payer_held + payer_rank` (the jobs its payer already
has on GPU slots, plus its place among its payer's waiting jobs), shared out
`1 + priority` jobs per round: `(payer_held + payer_rank - 1) / (1 + priority)`.
Within a payer the members take turns too (the place is by each member's own rank,
then age), so one member's backlog does not hold up the other members' first jobs.
Dispatch takes the lowest round first; among equal rounds the payer served longest
ago (last claim; never served first), then the higher plan priority, then creation
order.

Plan priority (`queue.priority`, 0-4, usually set per plan; resolved from the creating
user's terms and recorded on the job at creation, so a replay keeps it) weights the
share, it does not jump the line: a payer of priority p has up to 1 + p jobs in each
round, so when slots are contended it holds up to 1 + p times the slots of a
priority-0 payer, and among payers never served (or served equally long ago) it goes
first. It cannot starve anyone: every payer with work has a job in the first round, so
a payer with one job waits behind at most 1 + p jobs of each other payer (one job when
nobody has a priority), whatever the plans.

A job is only eligible while its *user's* `held + rank` is within the per-user running
limit (`running_limit`: the `jobs.max_running` policy, else the adapter's
setting): the limit is per person, the turn per payer.
The same order gives each job its `queue_position` (projections/queue_view.py).
"""

from __future__ import annotations

# The slots a job holds: a recorded prompt, or a live claim.
_HOLDS = """status IN ('created', 'queued', 'running')
           AND (prompt_id IS NOT NULL OR lease_expires_at > now())"""

# Each waiting user's `jobs.max_running` policy (user > org > plan > global), resolved in
# one set-based call over the policy_values read model (schema 0022); NULL where no
# scope sets it, and the claim falls back to RCC_MAX_RUNNING_JOBS_PER_USER. A job charged
# to an organisation (its payer is the org's id, not the user's) is judged with that
# org's scope, a personal job without one. The plan is the one
# rcc.policy.store.plans_of gives: the active subscription's, else free.
RUNNING_LIMITS = """
    waiting_users AS (
        SELECT array_agg(u.user_id || ' ' || u.payer) AS keys, array_agg(u.user_id) AS ids,
               array_agg(NULLIF(u.payer, u.user_id)) AS orgs,
               array_agg(COALESCE(p.plan, 'free')) AS plans
          FROM (SELECT DISTINCT user_id, payer FROM waiting) u
          LEFT JOIN users p ON p.id = u.user_id AND p.plan IS NOT NULL
                           AND p.plan_active_until > now()),
    -- One row, {"user payer": value}: joined to every waiting job as a lookup, not a
    -- join the planner would run as a nested loop over its misestimated row count.
    limits AS MATERIALIZED (
        SELECT jsonb_object_agg(wu.keys[r.n], r.value) AS by_user
          FROM waiting_users wu,
               rcc_policy_values_v1('jobs.max_running', now(), wu.ids, wu.orgs, wu.plans) r)"""

# Waiting = not yet submitted and not held under a live lease. `held`/`rank` are the
# user's (for the running limit), `payer_held`/`payer_rank` the payer's (for the turn).
WAITING_ORDER = f"""
    WITH served AS (
        SELECT payer, max(claimed_at) AS last_served FROM adapter_jobs
         WHERE claimed_at > now() - interval '1 hour'
         GROUP BY payer),
    user_holding AS (
        SELECT user_id, count(*) AS n FROM adapter_jobs WHERE {_HOLDS} GROUP BY user_id),
    payer_holding AS (
        SELECT payer, count(*) AS n FROM adapter_jobs WHERE {_HOLDS} GROUP BY payer),
    waiting AS (
        SELECT w.job_id, w.user_id, w.payer, w.position, w.job_type, w.priority,
               w.required_tags,
               row_number() OVER (PARTITION BY w.user_id ORDER BY w.position) AS rank
          FROM adapter_jobs w
         WHERE w.status IN ('created', 'queued') AND w.prompt_id IS NULL
           AND (w.lease_owner IS NULL OR w.lease_expires_at <= now())),
    ranked AS (
        SELECT waiting.*,
               row_number() OVER (PARTITION BY payer ORDER BY rank, position) AS payer_rank
          FROM waiting),
    {RUNNING_LIMITS}
    SELECT * FROM (
        SELECT ranked.*, COALESCE(user_holding.n, 0) AS held,
               COALESCE(payer_holding.n, 0) AS payer_held, served.last_served,
               -- a whole number (the key's bounds; it has no "no limit"), or NULL
               (limits.by_user ->> (ranked.user_id || ' ' || ranked.payer))::bigint
                   AS running_limit
          FROM ranked LEFT JOIN user_holding USING (user_id)
                      LEFT JOIN payer_holding USING (payer)
                      LEFT JOIN served USING (payer)
                      CROSS JOIN limits) ordered"""

# The dispatch order over WAITING_ORDER's columns.
FAIR_ORDER = """(payer_held + payer_rank - 1) / (1 + GREATEST(priority, 0)),
               last_served NULLS FIRST, priority DESC, position"""
