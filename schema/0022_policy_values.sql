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

-- The value of `p_key` in effect at `p_at` for a user / org / plan, as rcc.policy.resolve
-- answers it: the narrowest scope with a setting by then wins, and within a scope the
-- latest (effective_at, seq). SQL NULL: no scope has a setting (the caller's default
-- applies); JSON null: a setting of "no limit". A string body (not BEGIN ATOMIC), so the
-- table is looked up by name when called and a replay's swapped-in table is used.
CREATE FUNCTION rcc_policy_value_v1(p_key text, p_user text, p_org text, p_plan text,
                                    p_at timestamptz) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT v.value FROM policy_values v
     WHERE v.key = p_key AND v.effective_at <= p_at
       AND ((v.scope = 'user' AND v.scope_id = p_user)
         OR (v.scope = 'org' AND v.scope_id = p_org)
         OR (v.scope = 'plan' AND v.scope_id = p_plan)
         OR (v.scope = 'global' AND v.scope_id = ''))
     ORDER BY CASE v.scope WHEN 'user' THEN 0 WHEN 'org' THEN 1 WHEN 'plan' THEN 2 ELSE 3 END,
              v.effective_at DESC, v.seq DESC
     LIMIT 1
$$;

-- A user's plan as rcc.policy.store.plans_of says it: the active subscription's (the
-- users read model), else 'free'.
CREATE FUNCTION rcc_user_plan_v1(p_user text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT COALESCE((SELECT u.plan FROM users u
                      WHERE u.id = p_user AND u.plan IS NOT NULL
                        AND u.plan_active_until > now()), 'free')
$$;
GRANT EXECUTE ON FUNCTION rcc_policy_value_v1(text, text, text, text, timestamptz),
                          rcc_user_plan_v1(text) TO rcc_app;
