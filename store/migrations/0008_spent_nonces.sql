-- Nonces of agent session challenges that have been answered, kept until the challenge would
-- have expired anyway, so a challenge cannot be replayed, not even across a restart.
CREATE TABLE spent_nonces (
    nonce      TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL -- unix nanoseconds
) WITHOUT ROWID;
CREATE INDEX spent_nonces_expires ON spent_nonces (expires_at);
