"""The fair order of waiting jobs: round-robin across users, highest plan priority first.

Each waiting job gets `held + rank`: the jobs its user already has on a GPU slot, plus
its place among that user's waiting jobs. Dispatch takes the lowest first; among equals
the user served longest ago (last claim) goes first, then creation order. So every
user's next job comes before anyone's job after it, and a user with one job waits
behind at most one job of each other user. A job is only eligible
while `held + rank` is within the user's running limit (`running_limit`: the
`jobs.max_running` policy, else the adapter's setting). The same order gives each
job its `queue_position` (queue_view.py).
"""

from __future__ import annotations


def priority_sql() -> str:
    """The hook for plan priority: an SQL expression over `w.user_id`, higher first.
    Every user is equal until plans carry a priority."""
    return "0"


# Each waiting user's `jobs.max_running` policy (user > plan > global, h13), resolved in
# one set-based call over the policy_values read model (schema 0022); NULL where no
# scope sets it, and the claim falls back to RCC_MAX_RUNNING_JOBS_PER_USER. The plan is
# the one rcc.policy.store.plans_of gives: the active subscription's, else free.
RUNNING_LIMITS = """
    waiting_users AS (
        SELECT array_agg(u.user_id) AS ids, array_agg(COALESCE(p.plan, 'free')) AS plans
          FROM (SELECT DISTINCT user_id FROM waiting) u
          LEFT JOIN users p ON p.id = u.user_id AND p.plan IS NOT NULL
                           AND p.plan_active_until > now()),
    -- One row, {user id: value}: joined to every waiting job as a lookup, not a join the
    -- planner would run as a nested loop over its misestimated row count.
    limits AS MATERIALIZED (
        SELECT jsonb_object_agg(wu.ids[r.n], r.value) AS by_user
          FROM waiting_users wu,
               rcc_policy_values_v1('jobs.max_running', now(), wu.ids, NULL, wu.plans) r)"""

# Waiting = not yet submitted and not held under a live lease. `held` counts the jobs
# of the same user that hold a slot (a recorded prompt, or a live claim).
WAITING_ORDER = f"""
    WITH served AS (
        SELECT user_id, max(claimed_at) AS last_served FROM adapter_jobs
         WHERE claimed_at > now() - interval '1 hour'
         GROUP BY user_id),
    holding AS (
        SELECT user_id, count(*) AS n FROM adapter_jobs
         WHERE status IN ('created', 'queued', 'running')
           AND (prompt_id IS NOT NULL OR lease_expires_at > now())
         GROUP BY user_id),
    waiting AS (
        SELECT w.job_id, w.user_id, w.position, w.job_type, w.required_tags,
               row_number() OVER (PARTITION BY w.user_id ORDER BY w.position) AS rank,
               {priority_sql()} AS priority
          FROM adapter_jobs w
         WHERE w.status IN ('created', 'queued') AND w.prompt_id IS NULL
           AND (w.lease_owner IS NULL OR w.lease_expires_at <= now())),
    {RUNNING_LIMITS}
    SELECT * FROM (
        SELECT waiting.*, COALESCE(holding.n, 0) AS held, served.last_served,
               -- a whole number (the key's bounds; it has no "no limit"), or NULL
               (limits.by_user ->> waiting.user_id)::bigint AS running_limit
          FROM waiting LEFT JOIN holding USING (user_id)
                       LEFT JOIN served USING (user_id)
                       CROSS JOIN limits) ordered"""

# The dispatch order over WAITING_ORDER's columns.
FAIR_ORDER = "priority DESC, held + rank, last_served NULLS FIRST, position"
