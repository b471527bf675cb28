-- SQLite's migration 12: a node may follow a channel for an app instead of pinning a version:
-- the channel it follows, empty for a pin; its version is then the channel's candidate, moved on
-- promotion and withdrawal.
ALTER TABLE assignments ADD COLUMN channel TEXT NOT NULL DEFAULT '';
CREATE INDEX assignments_follow ON assignments (app, channel) WHERE channel != '';
