-- SQLite's migration 15: a site's labels (ferry site label); every node of the site carries them
-- under its own when a selector looks at it.
ALTER TABLE sites ADD COLUMN labels JSONB NOT NULL DEFAULT '{}';
