-- Secrets every server replica shares (the session secret, the CA), each sealed by the server
-- under the cluster key, which the database never holds: reading the database alone opens none
-- of them. A name is written once; the first value stored under it is the one all replicas use.
CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
