-- A site's labels (ferry site label), as a JSON object: every node of the site carries them
-- under its own when a selector looks at it.
ALTER TABLE sites ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
