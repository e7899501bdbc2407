-- The GPU pool as data (issue 16, h8): backends added, changed, drained and removed by
-- admins are events on the `backend-pool` stream; these are their read model and the
-- adapter's health readings.

-- backends: one row per backend in the pool, folded from the backend events by
-- projections/backends.py (rebuilt by `rcc replay`). A removed backend's row is gone.
CREATE TABLE backends (
    id          text        PRIMARY KEY,
    url         text        NOT NULL UNIQUE,
    slots       integer     NOT NULL,
    tags        text[]      NOT NULL DEFAULT '{}',
    draining    boolean     NOT NULL DEFAULT false,
    added_by    text        NOT NULL DEFAULT '',
    added_at    timestamptz NOT NULL,
    updated_by  text        NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL
);
INSERT INTO follower_checkpoints (name) VALUES ('backends') ON CONFLICT (name) DO NOTHING;

-- backend_health: what an adapter last saw of each backend (by URL): whether it
-- answered /system_stats, its GPU memory, ComfyUI's own queue and the slots it holds.
-- Working state like adapter_status, not history: overwritten at every poll.
CREATE TABLE backend_health (
    url             text        PRIMARY KEY,
    adapter         text        NOT NULL,
    checked_at      timestamptz NOT NULL,
    healthy         boolean     NOT NULL,
    error           text        NOT NULL DEFAULT '',
    device          text        NOT NULL DEFAULT '',
    vram_total      bigint,
    vram_free       bigint,
    queue_running   integer,
    queue_pending   integer,
    in_use          integer     NOT NULL DEFAULT 0,
    comfyui_version text        NOT NULL DEFAULT ''
);

-- Why a job of a given type waits when it is not the pool-wide reason (its type needs
-- tags no live backend has): {"VIDEO_TASK": "no live ComfyUI backend has the tags ..."}.
ALTER TABLE adapter_status ADD COLUMN type_reasons jsonb NOT NULL DEFAULT '{}'::jsonb;

GRANT SELECT, INSERT, UPDATE, DELETE ON backends, backend_health TO rcc_app;
