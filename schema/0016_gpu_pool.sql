-- The GPU pool (issue 16): any number of adapters share the dispatch queue.
--
-- adapter_jobs (0006) stays the one queue, folded from the log by whichever adapter
-- holds the feed's lock for a batch. Each adapter now claims jobs from it with a lease
-- (claims are serialised by a transaction-level advisory lock, so fairness and the
-- per-user running limit hold across adapters), renews its leases with its heartbeat,
-- and a job whose lease has expired is taken over by another adapter, which asks the
-- backend (/queue, /history) before it submits anything.

ALTER TABLE adapter_jobs
    ADD COLUMN user_id          text        NOT NULL DEFAULT '',
    ADD COLUMN lease_owner      text,        -- the adapter instance that holds the job
    ADD COLUMN lease_expires_at timestamptz,
    ADD COLUMN slot_backend     text,        -- the backend whose slot the job holds
    ADD COLUMN claimed_at       timestamptz, -- its last claim: round-robin serves the user
                                             -- served longest ago first
    ADD COLUMN attempt          integer     NOT NULL DEFAULT 1,
    ADD COLUMN started_at       timestamptz;  -- ComfyUI's execution_start (JobStarted)

-- Jobs created before this version: their owner, from the job stream's state.
UPDATE adapter_jobs a SET user_id = COALESCE(s.state->>'user_id', '')
  FROM streams s
 WHERE s.stream_id = 'job-' || a.job_id AND a.status IN ('created', 'queued', 'running');

CREATE INDEX adapter_jobs_waiting ON adapter_jobs (user_id, position)
    WHERE status IN ('created', 'queued') AND prompt_id IS NULL;
CREATE INDEX adapter_jobs_claimed ON adapter_jobs (claimed_at) WHERE claimed_at IS NOT NULL;
CREATE INDEX adapter_jobs_slots ON adapter_jobs (slot_backend)
    WHERE status IN ('created', 'queued', 'running') AND slot_backend IS NOT NULL;

-- Every adapter process, with its heartbeat (GET /admin/adapters). A row whose heartbeat
-- is old is a dead adapter; its leases run out by themselves.
CREATE TABLE adapter_instances (
    id            text        PRIMARY KEY,
    host          text        NOT NULL,
    pid           integer     NOT NULL,
    client_id     text        NOT NULL,  -- its own websocket clientId on every backend
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    jobs_held     integer     NOT NULL DEFAULT 0
);

GRANT SELECT, INSERT, UPDATE, DELETE ON adapter_instances TO rcc_app;
