CREATE TABLE channel_history (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    app     TEXT NOT NULL,
    version TEXT NOT NULL,
    action  TEXT NOT NULL, -- pushed, promoted, forced, republished, withdrawn
    reason  TEXT NOT NULL DEFAULT '',
    at      TEXT NOT NULL
);
CREATE INDEX channel_history_channel ON channel_history (channel, id);
INSERT INTO channel_history (channel, app, version, action, at)
    SELECT channel, app, version, 'pushed', added_at FROM channel_releases;
