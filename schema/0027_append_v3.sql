-- rcc_append_v3: rcc_append_v2's contract (same arguments, same rows back, same checks,
-- same hash chain, same errors), with the table work done set-wise. v2 runs three
-- statements per stream and one per event inside PL/pgSQL; a group commit of 64 job
-- creations (128 streams, 128 events) ran about 400 statements, and their executor
-- start-up was most of the server's time per reserve. Here: one statement locks and
-- reads every existing head (in stream-id order, as every writer locks), one inserts
-- the new heads, the hash chain is computed in a loop of expressions (no table access),
-- one statement inserts every event and one moves every head. v2 stays for scripts
-- and older processes during a rolling upgrade.
CREATE FUNCTION rcc_append_v3(
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
    n          int      := cardinality(p_streams);
    versions   bigint[];
    hashes     bytea[];
    genesis    bytea    := '\x0000000000000000000000000000000000000000000000000000000000000000';
    ev_version bigint[] := array_fill(0::bigint, ARRAY[cardinality(p_types)]);
    ev_time    timestamptz[] := array_fill(NULL::timestamptz, ARRAY[cardinality(p_types)]);
    ev_hash    bytea[]  := array_fill(NULL::bytea, ARRAY[cardinality(p_types)]);
    i          int;
    s          int;
    tx         xid8     := pg_current_xact_id();
BEGIN
    -- The existing heads, locked in stream-id order (the order of every other writer),
    -- then read in the order given (a statement of its own: it sees them as locked).
    PERFORM 1 FROM streams h WHERE h.stream_id = ANY(p_streams) ORDER BY h.stream_id FOR UPDATE;
    SELECT array_agg(h.version ORDER BY u.k), array_agg(h.last_hash ORDER BY u.k)
      INTO versions, hashes
      FROM unnest(p_streams) WITH ORDINALITY AS u(stream_id, k)
      LEFT JOIN streams h ON h.stream_id = u.stream_id AND h.stream_id = ANY(p_streams);
    FOR s IN 1 .. n LOOP
        IF versions[s] IS NULL THEN
            IF p_expected[s] > 0 THEN
                RAISE EXCEPTION 'stream % is at version 0, expected %', p_streams[s], p_expected[s]
                    USING ERRCODE = 'RC001';
            END IF;
        ELSIF p_expected[s] >= 0 AND p_expected[s] <> versions[s] THEN
            RAISE EXCEPTION 'stream % is at version %, expected %', p_streams[s], versions[s], p_expected[s]
                USING ERRCODE = 'RC001';
        END IF;
    END LOOP;
    -- New streams: a concurrent creator of the same one makes this a unique violation.
    INSERT INTO streams (stream_id, version, last_hash)
    SELECT u.stream_id, 0, genesis
      FROM unnest(p_streams, versions) AS u(stream_id, version)
     WHERE u.version IS NULL
     ORDER BY u.stream_id;
    FOR s IN 1 .. n LOOP
        IF versions[s] IS NULL THEN
            versions[s] := 0;
            hashes[s] := genesis;
        END IF;
    END LOOP;

    -- The chain, event by event in the order given (expressions only).
    FOR i IN 1 .. cardinality(p_types) LOOP
        s := p_event_stream[i];
        versions[s] := versions[s] + 1;
        ev_version[i] := versions[s];
        ev_time[i] := clock_timestamp();
        hashes[s] := rcc_event_hash_v1(hashes[s], p_streams[s], versions[s], p_types[i],
                                       p_data[i], p_metadata[i], ev_time[i]);
        ev_hash[i] := hashes[s];
    END LOOP;

    -- Positions are drawn in the order given, so they follow the events' order.
    RETURN QUERY
    WITH inserted AS (
        INSERT INTO events (stream_id, version, type, data, metadata, recorded_at, hash)
        SELECT p_streams[u.owner], u.version, u.type, u.data, u.metadata, u.recorded_at, u.hash
          FROM unnest(p_event_stream, ev_version, p_types, p_data, p_metadata, ev_time, ev_hash)
               WITH ORDINALITY AS u(owner, version, type, data, metadata, recorded_at, hash, k)
         ORDER BY u.k
        RETURNING position, stream_id, version, recorded_at)
    SELECT e.position, e.stream_id, e.version, tx, e.recorded_at
      FROM inserted e ORDER BY e.position;

    UPDATE streams h
       SET version = u.version, last_hash = u.hash, state = COALESCE(u.state, h.state)
      FROM unnest(p_streams, versions, hashes, p_states) AS u(stream_id, version, hash, state)
     WHERE h.stream_id = u.stream_id AND h.stream_id = ANY(p_streams);
END
$$;

-- The one-metadata form (bulk generators, scripts) goes through v3 as well.
CREATE OR REPLACE FUNCTION rcc_append_v1(
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
    SELECT * FROM rcc_append_v3(p_streams, p_expected, p_states, p_event_stream, p_types,
                                p_data, array_fill(p_metadata, ARRAY[cardinality(p_types)]))
$$;

-- events_stream_time (stream_id, recorded_at) served no reader: every read of one
-- stream (read_stream, time travel's read_stream_until, the portal's consistency check,
-- the policy book) filters on stream_id and orders by version, which the
-- (stream_id, version) unique index serves, and then filters on time. Every appended
-- event paid for its entry (one of four index inserts per event).
DROP INDEX events_stream_time;
