-- What an operator asked of an app on a node: stopped until started again, and a restart count
-- that the agent acts on once each time it grows.
ALTER TABLE assignments ADD COLUMN stopped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE assignments ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;
