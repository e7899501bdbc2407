-- The ComfyUI adapter (src/comfy_adapter): its place in the log, what it knows about
-- each job it dispatches, and its heartbeat. None of this is ledger history: the job
-- events are. These tables are the adapter's own working state, rebuilt from the log.

-- Where the adapter is in the commit-safe order of the global log. Moved in the same
-- transaction as the adapter_jobs rows it reflects, so a crash never loses a job event.
CREATE TABLE adapter_checkpoints (
    name        text        PRIMARY KEY,
    tx_id       xid8        NOT NULL DEFAULT '0',
    position    bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per job, folded from the job events: the durable dispatch queue. On start the
-- adapter reconciles every open row that has a prompt with that backend's /queue and
-- /history, and dispatches the rest in creation order (position of JobCreated).
CREATE TABLE adapter_jobs (
    job_id        text        PRIMARY KEY,
    position      bigint      NOT NULL,
    job_type      text        NOT NULL,
    workflow      jsonb,                 -- cleared once the job has ended
    status        text        NOT NULL,  -- the job's status as the events say
    backend       text,
    prompt_id     text,
    client_id     text,
    submitted_at  timestamptz,           -- when the prompt was recorded: timeouts count from here
    cleaned_up    boolean     NOT NULL DEFAULT false,  -- an ended job's prompt left ComfyUI
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX adapter_jobs_open ON adapter_jobs (position)
    WHERE status IN ('created', 'queued', 'running');
-- Ended jobs whose prompt may still sit on a backend (cancelled while submitted).
CREATE INDEX adapter_jobs_cleanup ON adapter_jobs (position)
    WHERE prompt_id IS NOT NULL AND NOT cleaned_up
      AND status IN ('succeeded', 'failed', 'cancelled');

-- The adapter's heartbeat and the state of its backends; the portal reads it to say why
-- a queued job waits (no backend configured, none reachable, all busy, adapter down).
CREATE TABLE adapter_status (
    name            text        PRIMARY KEY,
    heartbeat_at    timestamptz NOT NULL,
    backends        jsonb       NOT NULL DEFAULT '[]'::jsonb,
    waiting_reason  text        NOT NULL DEFAULT ''
);

-- The adapter runs as rcc_app like the rest of the service; it never deletes its rows.
GRANT SELECT, INSERT, UPDATE ON adapter_checkpoints, adapter_jobs, adapter_status TO rcc_app;
