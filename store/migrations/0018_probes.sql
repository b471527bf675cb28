-- Mesh probes: one row each, the probe package's document (nodes, links, results) as JSON.
CREATE TABLE probes (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    doc        TEXT NOT NULL,
    state      TEXT NOT NULL,
    open       INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX probes_open ON probes (open) WHERE open;
