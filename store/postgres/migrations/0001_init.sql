-- The schema of SQLite's migrations 1 to 9, in PostgreSQL's types: times are TIMESTAMPTZ
-- (microseconds), state that is JSON is JSONB, an event's data is JSON (kept byte for byte as
-- written), ids are identity columns.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE sites (
    name       TEXT PRIMARY KEY,
    tier       INTEGER NOT NULL CHECK (tier BETWEEN 1 AND 3),
    lat        DOUBLE PRECISION,
    lon        DOUBLE PRECISION,
    contact    TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('enroll', 'operator')),
    site        TEXT REFERENCES sites (name) ON DELETE CASCADE,
    role        TEXT NOT NULL DEFAULT '',
    uses_left   INTEGER,
    expires_at  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL,
    description TEXT NOT NULL DEFAULT ''
);
CREATE INDEX tokens_site ON tokens (site);

CREATE TABLE nodes (
    name        TEXT PRIMARY KEY,
    site        TEXT NOT NULL REFERENCES sites (name),
    public_key  TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL CHECK (status IN ('up', 'down', 'revoked')),
    labels      JSONB NOT NULL DEFAULT '{}',
    facts       JSONB NOT NULL DEFAULT '{}',
    apps        JSONB NOT NULL DEFAULT '[]',
    generation  BIGINT NOT NULL DEFAULT 1,
    last_seen   TIMESTAMPTZ,
    enrolled_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX nodes_site ON nodes (site);

-- Rows are inserted only under the events lock (see the package's doc), so ids are assigned
-- in the order the inserting transactions commit.
CREATE TABLE events (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time    TIMESTAMPTZ NOT NULL,
    type    TEXT NOT NULL,
    subject TEXT NOT NULL,
    data    JSON NOT NULL DEFAULT '{}',
    -- "token:<id>", "node:<name>" or "system"; role is an operator token's role; source the
    -- address the request came from.
    actor   TEXT NOT NULL DEFAULT 'system',
    role    TEXT NOT NULL DEFAULT '',
    source  TEXT NOT NULL DEFAULT ''
);

CREATE TABLE signing_keys (
    id         TEXT PRIMARY KEY,          -- minisign key id, 16 upper-case hex digits
    public_key TEXT NOT NULL UNIQUE,      -- the base64 minisign public key
    comment    TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);

CREATE TABLE channels (
    name           TEXT PRIMARY KEY,
    position       INTEGER NOT NULL UNIQUE,
    allow_unsigned BOOLEAN NOT NULL DEFAULT false,
    created_at     TIMESTAMPTZ NOT NULL
);
INSERT INTO channels (name, position, allow_unsigned, created_at) VALUES
    ('unstable', 1, false, '1970-01-01T00:00:00Z'),
    ('preview', 2, false, '1970-01-01T00:00:00Z'),
    ('production', 3, false, '1970-01-01T00:00:00Z');

CREATE TABLE releases (
    app        TEXT NOT NULL,
    version    TEXT NOT NULL,
    class      TEXT NOT NULL,
    blob       TEXT NOT NULL,
    size       BIGINT NOT NULL,
    signed_by  TEXT NOT NULL DEFAULT '',
    signature  TEXT NOT NULL DEFAULT '',
    manifest   JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    withdrawn  TEXT,
    PRIMARY KEY (app, version)
);
CREATE INDEX releases_blob ON releases (blob);

CREATE TABLE channel_releases (
    channel  TEXT NOT NULL REFERENCES channels (name),
    app      TEXT NOT NULL,
    version  TEXT NOT NULL,
    added_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (channel, app, version),
    FOREIGN KEY (app, version) REFERENCES releases (app, version)
);
CREATE INDEX channel_releases_release ON channel_releases (app, version);

CREATE TABLE channel_history (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel TEXT NOT NULL,
    app     TEXT NOT NULL,
    version TEXT NOT NULL,
    action  TEXT NOT NULL, -- pushed, promoted, forced, republished, withdrawn
    reason  TEXT NOT NULL DEFAULT '',
    at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX channel_history_channel ON channel_history (channel, id);

CREATE TABLE assignments (
    node        TEXT NOT NULL REFERENCES nodes (name) ON DELETE CASCADE,
    app         TEXT NOT NULL,
    version     TEXT NOT NULL,
    assigned_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (node, app),
    FOREIGN KEY (app, version) REFERENCES releases (app, version)
);
CREATE INDEX assignments_release ON assignments (app, version);

-- Nonces of agent session challenges that have been answered, kept until the challenge would
-- have expired anyway, so a challenge cannot be replayed, not even across a restart or on
-- another replica.
CREATE TABLE spent_nonces (
    nonce      TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL -- unix nanoseconds
);
CREATE INDEX spent_nonces_expires ON spent_nonces (expires_at);
