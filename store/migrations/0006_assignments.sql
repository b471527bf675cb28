CREATE TABLE assignments (
    node        TEXT NOT NULL REFERENCES nodes (name) ON DELETE CASCADE,
    app         TEXT NOT NULL,
    version     TEXT NOT NULL,
    assigned_at TEXT NOT NULL,
    PRIMARY KEY (node, app),
    FOREIGN KEY (app, version) REFERENCES releases (app, version)
);
CREATE INDEX assignments_release ON assignments (app, version);

ALTER TABLE nodes ADD COLUMN apps TEXT NOT NULL DEFAULT '[]';
