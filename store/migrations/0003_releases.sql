CREATE TABLE channels (
    name           TEXT PRIMARY KEY,
    position       INTEGER NOT NULL UNIQUE,
    allow_unsigned INTEGER NOT NULL DEFAULT 0,
    created_at     TEXT NOT NULL
);
INSERT INTO channels (name, position, allow_unsigned, created_at) VALUES
    ('unstable', 1, 0, '1970-01-01T00:00:00Z'),
    ('preview', 2, 0, '1970-01-01T00:00:00Z'),
    ('production', 3, 0, '1970-01-01T00:00:00Z');

CREATE TABLE releases (
    app        TEXT NOT NULL,
    version    TEXT NOT NULL,
    class      TEXT NOT NULL,
    blob       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    signed_by  TEXT NOT NULL DEFAULT '',
    manifest   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    withdrawn  TEXT,
    PRIMARY KEY (app, version)
);
CREATE INDEX releases_blob ON releases (blob);

CREATE TABLE channel_releases (
    channel  TEXT NOT NULL REFERENCES channels (name),
    app      TEXT NOT NULL,
    version  TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (channel, app, version),
    FOREIGN KEY (app, version) REFERENCES releases (app, version)
);
