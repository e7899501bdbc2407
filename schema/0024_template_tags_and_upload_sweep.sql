-- Issue 15, finished (h15): a template's backend tag requirement rides on its jobs.
--
-- `job_created.required_tags` (the template's tags, recorded at creation) is folded by
-- the adapter's follower into its dispatch rows, so the claim gives the job only to a
-- backend carrying those tags as well as its job type's (RCC_JOB_TYPE_TAGS).
ALTER TABLE adapter_jobs ADD COLUMN required_tags text[] NOT NULL DEFAULT '{}';

-- upload_sweeps: which expired uploads have had their file deleted, by the tick loop
-- (rcc.service.upload_sweeper) or by a later upload. The `uploads` row and its
-- `upload_stored` event stay as history; this operational table (like hold_timeouts)
-- keeps each tick to the uploads not yet swept instead of every expired one ever.
CREATE TABLE upload_sweeps (
    upload_id   text        PRIMARY KEY,
    deleted_at  timestamptz NOT NULL
);
GRANT SELECT, INSERT ON upload_sweeps TO rcc_app;
