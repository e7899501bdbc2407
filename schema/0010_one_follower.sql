-- One follower runtime (issue 11): the projections and the ComfyUI adapter follow the
-- log with the same code (src/rcc/follower), so their checkpoints live in one table.
--
-- * projection_checkpoints becomes follower_checkpoints, with the follower's kind:
--   'projection' (a read model, rebuilt by `rcc replay`) or 'subscriber' (a follower
--   with effects outside its rows, like the adapter).
-- * A follower that meets an event type its version does not know stops there rather
--   than skip it; it says where and why in blocked_* (cleared when it moves on), so
--   `rcc projections status` and /readyz can tell the operator to upgrade it.
-- * The adapter's checkpoint moves over as it stands (named 'adapter:<name>'), so an
--   upgraded adapter neither re-reads nor skips anything.
-- * projection_checkpoints stays as a view of the projections' rows: readers keep
--   their query, and a projector of the previous version still running during a
--   rolling deploy keeps writing through it (a simple view is updatable).

ALTER TABLE projection_checkpoints RENAME TO follower_checkpoints;
ALTER TABLE follower_checkpoints
    ADD COLUMN kind             text  NOT NULL DEFAULT 'projection'
                                      CHECK (kind IN ('projection', 'subscriber')),
    ADD COLUMN blocked_tx_id    xid8,
    ADD COLUMN blocked_position bigint,
    ADD COLUMN blocked_type     text,
    ADD COLUMN blocked_since    timestamptz;

INSERT INTO follower_checkpoints (name, kind, tx_id, position, updated_at)
SELECT 'adapter:' || name, 'subscriber', tx_id, position, updated_at FROM adapter_checkpoints;
DROP TABLE adapter_checkpoints;

CREATE VIEW projection_checkpoints AS
    SELECT name, tx_id, position, updated_at, rebuilt_at
      FROM follower_checkpoints WHERE kind = 'projection';

GRANT SELECT, INSERT, UPDATE ON follower_checkpoints, projection_checkpoints TO rcc_app;
