-- The owner running migrations and the service must be able to SET ROLE rcc_app. A
-- superuser always can; an owner with CREATEROLE but no SUPERUSER (Supabase, Neon) that
-- created rcc_app in 0001 holds it only WITH ADMIN OPTION on PostgreSQL 16+ (not SET,
-- unless createrole_self_grant says so), so it grants itself the membership here.
DO $$
BEGIN
    IF NOT pg_has_role(
        current_user,
        'rcc_app',
        CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'SET' ELSE 'MEMBER' END
    ) THEN
        EXECUTE format('GRANT rcc_app TO %I', current_user);
    END IF;
END
$$;
