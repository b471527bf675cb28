-- SQLite's migration 17: webhooks (their HMAC secret sealed under the cluster key), the last
-- event each delivery target handled, and its dead letters.
CREATE TABLE webhooks (
    id         TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,
    secret     BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE delivery_cursors (
    target   TEXT PRIMARY KEY,
    event_id BIGINT NOT NULL
);
CREATE TABLE delivery_failures (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    target     TEXT NOT NULL,
    event_id   BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    attempts   INT NOT NULL,
    error      TEXT NOT NULL,
    failed_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX delivery_failures_target ON delivery_failures (target, id);
