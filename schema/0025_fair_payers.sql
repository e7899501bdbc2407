-- Fairness per payer and plan priority (issue 16, h16).
--
-- The dispatch round robin (rcc/queue_order.py) now goes across *payers*: the wallet a
-- job is charged to, so an organisation's jobs share one turn however many members it
-- has, and a lone user's jobs take theirs. `priority` is the plan priority recorded on
-- the job at creation (policy `queue.priority`); it orders payers that have been
-- served equally, never one ahead of a payer served less.

ALTER TABLE adapter_jobs
    ADD COLUMN payer    text    NOT NULL DEFAULT '',  -- JobCreated.wallet_id
    ADD COLUMN priority integer NOT NULL DEFAULT 0;   -- JobCreated.queue_priority

-- Jobs still open from before this version: their wallet, from the job stream's state
-- (they keep priority 0, as everyone had).
UPDATE adapter_jobs a SET payer = COALESCE(s.state->>'wallet_id', '')
  FROM streams s
 WHERE s.stream_id = 'job-' || a.job_id AND a.status IN ('created', 'queued', 'running');

CREATE INDEX adapter_jobs_waiting_payer ON adapter_jobs (payer, position)
    WHERE status IN ('created', 'queued') AND prompt_id IS NULL;
