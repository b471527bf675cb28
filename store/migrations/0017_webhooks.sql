-- Notifications: webhooks (their HMAC secret sealed by the server under the cluster key), the
-- last event each delivery target (webhook/ID, email) handled, and its dead letters: the
-- deliveries given up after their last try.
CREATE TABLE webhooks (
    id         TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,
    secret     BLOB NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE delivery_cursors (
    target   TEXT PRIMARY KEY,
    event_id INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE delivery_failures (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    target     TEXT NOT NULL,
    event_id   INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    error      TEXT NOT NULL,
    failed_at  TEXT NOT NULL
);
CREATE INDEX delivery_failures_target ON delivery_failures (target, id);
