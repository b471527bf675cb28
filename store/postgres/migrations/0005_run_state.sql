-- SQLite's migration 13: what an operator asked of an app on a node: stopped until started
-- again, and a restart count that the agent acts on once each time it grows.
ALTER TABLE assignments ADD COLUMN stopped BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE assignments ADD COLUMN restarts BIGINT NOT NULL DEFAULT 0;
