-- One row per lot a wallet can still spend or return to (h9, h17; issue 12): derived
-- write-side state, like the cached head, kept in the transaction of the events that
-- move the lots (rcc.store.wallet_lots). The head keeps the sums (balance, held,
-- open_jobs, lot_seq, pinned, the daily counters); a reserve reads only the first
-- lots in spending order and rewrites only the rows it draws from, instead of
-- decoding and rewriting every lot in a TOASTed head.
CREATE TABLE wallet_lots (
    stream_id    text    NOT NULL,
    lot_id       text    NOT NULL,
    source       text    NOT NULL,
    amount       bigint  NOT NULL,
    remaining    bigint  NOT NULL,
    priority     integer NOT NULL,
    effective_us bigint  NOT NULL,
    no_expiry    boolean NOT NULL,
    expires_us   bigint  NOT NULL,  -- 0 without expiry (as rcc.domain.lots.spending_key)
    lot_no       bigint  NOT NULL,  -- the number in the id: the last tie-breaker
    ref          text,
    PRIMARY KEY (stream_id, lot_id)
) WITH (fillfactor = 80);  -- room on each page: a draw's update stays HOT (no index entry)
-- The spending order (rcc.domain.lots.spending_key) within a wallet.
CREATE INDEX wallet_lots_spending
    ON wallet_lots (stream_id, priority, no_expiry, expires_us, effective_us, lot_no);
GRANT SELECT, INSERT, UPDATE, DELETE ON wallet_lots TO rcc_app;

-- Existing wallets: their heads' lots move into the table.
INSERT INTO wallet_lots (stream_id, lot_id, source, amount, remaining, priority,
                         effective_us, no_expiry, expires_us, lot_no, ref)
SELECT s.stream_id, l->>0, l->>1, (l->>2)::bigint, (l->>3)::bigint, (l->>4)::integer,
       (l->>5)::bigint, jsonb_typeof(l->6) IS DISTINCT FROM 'number',
       COALESCE((l->>6)::bigint, 0),
       CASE WHEN substr(l->>0, 2) ~ '^[0-9]+$' THEN substr(l->>0, 2)::bigint ELSE 0 END,
       l->>7
  FROM streams s, jsonb_array_elements(s.state->'lots') AS l
 WHERE s.stream_id LIKE 'wallet-%' AND jsonb_typeof(s.state->'lots') = 'array';
UPDATE streams SET state = state - 'lots'
 WHERE stream_id LIKE 'wallet-%' AND state ? 'lots';
