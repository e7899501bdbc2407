-- Workflow templates and uploads (issue 15, h4).

-- templates: one row per template, its current version (projections/templates.py,
-- rebuilt by `rcc replay`). An unpublished template keeps its row, published = false.
CREATE TABLE templates (
    id           text        PRIMARY KEY,
    version      integer     NOT NULL,
    published    boolean     NOT NULL,
    name         text        NOT NULL,
    job_type     text        NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX templates_published ON templates (published, name, id);

-- template_versions: every version ever published, whole (a job names the version it
-- ran, which stays readable after a new version or an unpublish).
CREATE TABLE template_versions (
    id            text        NOT NULL,
    version       integer     NOT NULL,
    spec          jsonb       NOT NULL,
    actor         text        NOT NULL,
    published_at  timestamptz NOT NULL,
    PRIMARY KEY (id, version)
);

-- template_jobs: which template and version each templated job ran.
CREATE TABLE template_jobs (
    job_id       text    PRIMARY KEY,
    template_id  text    NOT NULL,
    version      integer NOT NULL
);

-- uploads: the files users uploaded (projections/uploads.py); the bytes live in
-- $RCC_DATA_DIR/uploads/<id>, named by id only (never by the client's filename).
CREATE TABLE uploads (
    id            text        PRIMARY KEY,
    user_id       text        NOT NULL,
    kind          text        NOT NULL,
    content_type  text        NOT NULL,
    bytes         bigint      NOT NULL,
    sha256        text        NOT NULL,
    width         integer,
    height        integer,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX uploads_owner ON uploads (user_id, created_at);
CREATE INDEX uploads_expiry ON uploads (expires_at);

-- backend_descriptions: the last GET /object_info each ComfyUI backend answered, so a
-- workflow can still be checked (against the last known description) while no backend
-- answers. A cache, not history: replaced on each fetch, never replayed.
CREATE TABLE backend_descriptions (
    backend     text        PRIMARY KEY,
    body        jsonb       NOT NULL,
    fetched_at  timestamptz NOT NULL
);

INSERT INTO projection_checkpoints (name) VALUES ('templates'), ('uploads')
    ON CONFLICT (name) DO NOTHING;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON templates, template_versions, template_jobs, uploads, backend_descriptions TO rcc_app;
