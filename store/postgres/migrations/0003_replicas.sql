-- SQLite's migration 11: server replicas and the agent streams they hold, so that the replica
-- that sweeps for silent nodes does not take a node whose agent talks to another for silent.
CREATE TABLE replicas (
    id         TEXT PRIMARY KEY,
    addr       TEXT NOT NULL DEFAULT '',
    started_at TIMESTAMPTZ NOT NULL,
    seen_at    TIMESTAMPTZ NOT NULL
);
-- The replica holding the node's agent stream; NULL when none does.
ALTER TABLE nodes ADD COLUMN stream_replica TEXT;
