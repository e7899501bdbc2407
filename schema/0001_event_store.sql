-- The event store: the only source of truth. Everything else is derived from it.

-- The service runs as this role (SET ROLE on every pooled connection). It may add
-- and read events but never change them: the grants below are the second line of
-- defence behind the immutability triggers.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rcc_app') THEN
        CREATE ROLE rcc_app NOLOGIN;
    END IF;
END
$$;

CREATE TABLE events (
    position     bigserial   PRIMARY KEY,
    -- The writing transaction's id: readers order by (tx_id, position) and only read
    -- transactions older than every running one, so a late commit is never skipped.
    tx_id        xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_id    text        NOT NULL,
    version      bigint      NOT NULL CHECK (version >= 1),
    type         text        NOT NULL,
    data         jsonb       NOT NULL,
    metadata     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    hash         bytea       NOT NULL,
    -- Two writers can never both claim version N of a stream.
    UNIQUE (stream_id, version)
);
CREATE INDEX events_commit_order ON events (tx_id, position);
CREATE INDEX events_stream_time ON events (stream_id, recorded_at);

-- One head row per stream: its version, the last hash of its chain and the folded
-- aggregate state. Writers lock it FOR UPDATE, which serialises writers of one
-- stream inside the database (no optimistic retry storm on a hot wallet).
-- The state is a cache: `rcc audit verify` recomputes it from the events alone.
CREATE TABLE streams (
    stream_id  text   PRIMARY KEY,
    version    bigint NOT NULL,
    last_hash  bytea  NOT NULL,
    state      jsonb  NOT NULL DEFAULT '{}'::jsonb
);

-- An idempotency key is written in the same transaction as the events its command
-- produced, so "took effect" and "remembered" can never disagree.
CREATE TABLE idempotency_keys (
    key          text        PRIMARY KEY,
    fingerprint  bytea       NOT NULL,
    result       jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION rcc_refuse_event_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable: % refused', TG_OP
        USING ERRCODE = 'RC002';
END
$$;

-- Whatever the client (even a superuser forgetting itself), history is not rewritten.
CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION rcc_refuse_event_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION rcc_refuse_event_change();

-- Appends events to several streams in one call: locks every head in a fixed order
-- (no deadlocks between multi-stream writers), checks each expected version
-- (-1: any), chains the hashes and moves the heads. Raises RC001 on a stale version.
-- Each event i belongs to p_streams[p_event_stream[i]] and carries p_metadata[i]
-- (one transaction may hold several commands, each with its own actor and request).
-- No NOTIFY in here: it takes a server-wide lock from pre-commit to the end of commit,
-- which would make every appending transaction commit one at a time. Writers notify
-- after commit instead (src/rcc/store/notify.py).
CREATE FUNCTION rcc_append_v2(
    p_streams      text[],
    p_expected     bigint[],
    p_states       jsonb[],
    p_event_stream int[],
    p_types        text[],
    p_data         jsonb[],
    p_metadata     jsonb[]
) RETURNS TABLE (out_position bigint, out_stream_id text, out_version bigint, out_tx_id xid8,
               out_recorded_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    i          int;
    s          int;
    order_idx  int[];
    versions   bigint[] := array_fill(0::bigint, ARRAY[cardinality(p_streams)]);
    hashes     bytea[]  := array_fill('\x'::bytea, ARRAY[cardinality(p_streams)]);
    genesis    bytea    := '\x0000000000000000000000000000000000000000000000000000000000000000';
    head       record;
    ev_time    timestamptz;
    ev_hash    bytea;
    ev_pos     bigint;
    tx         xid8     := pg_current_xact_id();
BEGIN
    SELECT array_agg(idx ORDER BY p_streams[idx]) INTO order_idx
      FROM generate_subscripts(p_streams, 1) AS idx;
    FOREACH s IN ARRAY order_idx LOOP
        SELECT version, last_hash INTO head FROM streams
         WHERE stream_id = p_streams[s] FOR UPDATE;
        IF NOT FOUND THEN
            IF p_expected[s] > 0 THEN
                RAISE EXCEPTION 'stream % is at version 0, expected %', p_streams[s], p_expected[s]
                    USING ERRCODE = 'RC001';
            END IF;
            INSERT INTO streams (stream_id, version, last_hash) VALUES (p_streams[s], 0, genesis);
            versions[s] := 0;
            hashes[s] := genesis;
        ELSE
            IF p_expected[s] >= 0 AND p_expected[s] <> head.version THEN
                RAISE EXCEPTION 'stream % is at version %, expected %', p_streams[s], head.version, p_expected[s]
                    USING ERRCODE = 'RC001';
            END IF;
            versions[s] := head.version;
            hashes[s] := head.last_hash;
        END IF;
    END LOOP;

    FOR i IN 1 .. cardinality(p_types) LOOP
        s := p_event_stream[i];
        versions[s] := versions[s] + 1;
        ev_time := clock_timestamp();
        ev_hash := rcc_event_hash_v1(hashes[s], p_streams[s], versions[s], p_types[i],
                                     p_data[i], p_metadata[i], ev_time);
        hashes[s] := ev_hash;
        INSERT INTO events (stream_id, version, type, data, metadata, recorded_at, hash)
             VALUES (p_streams[s], versions[s], p_types[i], p_data[i], p_metadata[i], ev_time, ev_hash)
          RETURNING position INTO ev_pos;
        out_position := ev_pos; out_stream_id := p_streams[s]; out_version := versions[s];
        out_tx_id := tx; out_recorded_at := ev_time;
        RETURN NEXT;
    END LOOP;

    FOR s IN 1 .. cardinality(p_streams) LOOP
        UPDATE streams
           SET version = versions[s], last_hash = hashes[s],
               state = COALESCE(p_states[s], state)
         WHERE stream_id = p_streams[s];
    END LOOP;
END
$$;

-- The same with one metadata object for every event (bulk generators, scripts).
CREATE FUNCTION rcc_append_v1(
    p_streams      text[],
    p_expected     bigint[],
    p_states       jsonb[],
    p_event_stream int[],
    p_types        text[],
    p_data         jsonb[],
    p_metadata     jsonb
) RETURNS TABLE (out_position bigint, out_stream_id text, out_version bigint, out_tx_id xid8,
               out_recorded_at timestamptz)
LANGUAGE sql AS $$
    SELECT * FROM rcc_append_v2(p_streams, p_expected, p_states, p_event_stream, p_types,
                                p_data, array_fill(p_metadata, ARRAY[cardinality(p_types)]))
$$;

-- The chain link: sha256(previous hash || canonical bytes). The canonical bytes are
-- the fields joined by the unit separator, with data and metadata in PostgreSQL's
-- jsonb text form (keys sorted, fixed spacing) and the time in epoch microseconds.
-- src/rcc/store/hashing.py computes the same bytes for `rcc audit verify`.
CREATE FUNCTION rcc_event_hash_v1(
    prev bytea, stream_id text, version bigint, type text,
    data jsonb, metadata jsonb, recorded_at timestamptz
) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT sha256(prev || convert_to(
        concat_ws(chr(31), stream_id, version::text, type, data::text, metadata::text,
                  ((extract(epoch FROM recorded_at) * 1000000)::bigint)::text),
        'UTF8'))
$$;

GRANT SELECT, INSERT ON events TO rcc_app;
GRANT USAGE ON SEQUENCE events_position_seq TO rcc_app;
GRANT SELECT, INSERT, UPDATE ON streams TO rcc_app;
GRANT SELECT, INSERT ON idempotency_keys TO rcc_app;
-- /readyz reports pending migrations; the table is created by the migrator itself.
GRANT SELECT ON schema_migrations TO rcc_app;
