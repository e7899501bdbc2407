-- Model files (issue 6): the `models` read model, and the progress of downloads.

-- models: one row per model file name, folded from the model events by
-- projections/models.py (rebuildable by `rcc replay`, like every read model). `status`
-- is installed, downloading or failed; an installed file stays installed (sha256 and
-- size kept) while its replacement downloads, and after the replacement fails.
CREATE TABLE models (
    name          text        PRIMARY KEY,
    kind          text        NOT NULL,
    status        text        NOT NULL,
    size_bytes    bigint,
    sha256        text,
    installed_at  timestamptz,
    source        text,                 -- the URL of the last install, without its query
    install_id    text,                 -- the download in progress, if any
    error         text,                 -- why the last install failed
    requested_at  timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX models_kind ON models (kind, name);
INSERT INTO projection_checkpoints (name) VALUES ('models') ON CONFLICT (name) DO NOTHING;

-- model_downloads: how far each download in progress is. Working state, not history:
-- the row is inserted with the install's request event and deleted with its outcome
-- event (same transactions), and the downloader updates it as bytes arrive. A row
-- whose updated_at stops moving is a download whose process died; the next install
-- of that name closes it as failed.
CREATE TABLE model_downloads (
    install_id   text        PRIMARY KEY,
    name         text        NOT NULL,
    kind         text        NOT NULL,
    bytes_done   bigint      NOT NULL DEFAULT 0,
    bytes_total  bigint,                -- Content-Length, when the server sent one
    updated_at   timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT, INSERT, UPDATE, DELETE ON models, model_downloads TO rcc_app;
