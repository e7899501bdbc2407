-- Policy values readable from SQL (issue 14, h13): the adapters' claim applies each
-- user's `jobs.max_running` (user > plan > global) in the same statement that picks
-- the waiting jobs, so it needs the settings as rows, not as a book in Python.
--
-- policy_values is a read model of projections/policy_values.py: one row per PolicySet
-- event of the `policies` stream (`seq` is its version there), rebuilt by
-- `rcc replay --projection policy_values`. The events stay the source of truth; the
-- Python resolver (rcc.policy.resolve) reads them directly, and a test replays this
-- table and compares every value both resolve.
CREATE TABLE policy_values (
    key           text        NOT NULL,
    scope         text        NOT NULL,  -- user, org, plan or global
    scope_id      text        NOT NULL,  -- '' for global
    effective_at  timestamptz NOT NULL,
    seq           bigint      NOT NULL,
    value         jsonb       NOT NULL,  -- JSON null: "no limit" for nullable keys
    PRIMARY KEY (key, scope, scope_id, effective_at, seq)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON policy_values TO rcc_app;
INSERT INTO follower_checkpoints (name) VALUES ('policy_values') ON CONFLICT (name) DO NOTHING;

-- The value of `p_key` in effect at `p_at` for each (user, org, plan) of the arrays (read
-- together, as `unnest` pairs them; a NULL array is all NULLs), as rcc.policy.resolve
-- answers it: the narrowest scope with a setting by then wins, and within a scope the
-- latest (effective_at, seq). A row per position `n` that has a setting in some scope
-- (none: the caller's default applies); a JSON null value is a setting of "no limit".
-- Set-based (one hash join per scope), so the claim resolves every waiting user in one
-- call. A string body (not BEGIN ATOMIC): the table is looked up by name when called, so
-- a replay's swapped-in table is the one read.
CREATE FUNCTION rcc_policy_values_v1(p_key text, p_at timestamptz, p_users text[],
                                     p_orgs text[], p_plans text[])
RETURNS TABLE (n bigint, value jsonb)
LANGUAGE sql STABLE AS $$
    WITH a AS (SELECT * FROM unnest(p_users, p_orgs, p_plans)
                        WITH ORDINALITY AS a(user_id, org_id, plan, n)),
         v AS (SELECT * FROM policy_values WHERE key = p_key AND effective_at <= p_at),
         found AS (
             SELECT a.n, 0 AS rank, v.effective_at, v.seq, v.value
               FROM a JOIN v ON v.scope = 'user' AND v.scope_id = a.user_id
             UNION ALL
             SELECT a.n, 1, v.effective_at, v.seq, v.value
               FROM a JOIN v ON v.scope = 'org' AND v.scope_id = a.org_id
             UNION ALL
             SELECT a.n, 2, v.effective_at, v.seq, v.value
               FROM a JOIN v ON v.scope = 'plan' AND v.scope_id = a.plan
             UNION ALL
             SELECT a.n, 3, v.effective_at, v.seq, v.value
               FROM a CROSS JOIN v WHERE v.scope = 'global' AND v.scope_id = '')
    SELECT DISTINCT ON (n) n, value FROM found ORDER BY n, rank, effective_at DESC, seq DESC
$$;
GRANT EXECUTE ON FUNCTION rcc_policy_values_v1(text, timestamptz, text[], text[], text[])
    TO rcc_app;
