-- Every transaction that appends records the ids of the commands it carries, in the same
-- transaction (src/rcc/store/outcome.py). When the connection is lost while COMMIT's reply
-- is in flight, the service asks a fresh connection whether the id is here: present means
-- the command took effect, so it answers the real answer instead of running it again.
--
-- The check also fences: it inserts the id itself with fenced = true. If the lost
-- transaction had not committed, its own INSERT of the id can then only fail (unique
-- violation), so a COMMIT still travelling to the server can never land after the
-- service has answered "did not commit". If that transaction is still in progress, the
-- check's INSERT waits on the unique index until it ends, and then sees its real outcome.
--
-- Rows are never read again once a command's answer is given; an operator may delete
-- rows older than a day (the longest any check waits is seconds). The ids are time
-- ordered (UUIDv7 layout) so the index only grows at its right edge.
CREATE TABLE command_ids (
    id           uuid        PRIMARY KEY,
    fenced       boolean     NOT NULL DEFAULT false,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT ON command_ids TO rcc_app;
