CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE sites (
    name       TEXT PRIMARY KEY,
    tier       INTEGER NOT NULL CHECK (tier BETWEEN 1 AND 3),
    lat        REAL,
    lon        REAL,
    contact    TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('enroll', 'operator')),
    site        TEXT REFERENCES sites (name) ON DELETE CASCADE,
    role        TEXT NOT NULL DEFAULT '',
    uses_left   INTEGER,
    expires_at  TEXT,
    created_at  TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT ''
);

CREATE TABLE nodes (
    name        TEXT PRIMARY KEY,
    site        TEXT NOT NULL REFERENCES sites (name),
    public_key  TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL CHECK (status IN ('up', 'down', 'revoked')),
    labels      TEXT NOT NULL DEFAULT '{}',
    facts       TEXT NOT NULL DEFAULT '{}',
    generation  INTEGER NOT NULL DEFAULT 1,
    last_seen   TEXT,
    enrolled_at TEXT NOT NULL
);
CREATE INDEX nodes_site ON nodes (site);

CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    time    TEXT NOT NULL,
    type    TEXT NOT NULL,
    subject TEXT NOT NULL,
    data    TEXT NOT NULL DEFAULT '{}'
);
