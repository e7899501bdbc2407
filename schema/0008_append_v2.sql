-- rcc_append_v2: rcc_append_v1 with metadata per event (so one transaction can carry
-- several commands, each with its own actor and request) and without pg_notify.
-- NOTIFY takes a server-wide lock from pre-commit to the end of commit, which made
-- every appending transaction commit one at a time; writers now notify after commit,
-- at most once per few milliseconds per process (src/rcc/store/notify.py). Readers
-- never depended on the notification's content, only on being woken.
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
