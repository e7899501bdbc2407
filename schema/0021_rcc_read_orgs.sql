-- rcc_read gains the organisations (issue 12's read interface; issue 13's orgs). Same
-- rules as schema/0015: views only gain columns, a breaking change is a new view name,
-- `rcc replay` recreates every rcc_read view over the tables it swaps in.

-- One row per organisation, with the wallet its members charge (see rcc_read.balances).
CREATE VIEW rcc_read.orgs AS
SELECT o.id AS org_id,
       o.name,
       o.owner_user_id,
       o.wallet_id,
       o.monthly_budget_rcc,
       o.member_count,
       o.created_at,
       o.updated_at
  FROM public.orgs o;

-- Every membership that ever was (`active` false once the member left or was removed);
-- e-mail addresses stay out, as in the other views.
CREATE VIEW rcc_read.org_members AS
SELECT m.org_id,
       m.user_id,
       m.role,
       m.monthly_budget_rcc,
       m.active,
       m.joined_at,
       m.left_at
  FROM public.org_members m;

GRANT SELECT ON rcc_read.orgs, rcc_read.org_members TO rcc_reader;
