CREATE TABLE signing_keys (
    id         TEXT PRIMARY KEY,          -- minisign key id, 16 upper-case hex digits
    public_key TEXT NOT NULL UNIQUE,      -- the base64 minisign public key
    comment    TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
