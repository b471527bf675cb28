-- SQLite's migration 18: mesh probes, one row each, the probe package's document as JSON.
CREATE TABLE probes (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    doc        TEXT NOT NULL,
    state      TEXT NOT NULL,
    open       BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX probes_open ON probes (open) WHERE open;
