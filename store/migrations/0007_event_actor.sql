-- Who caused each event: "token:<id>", "node:<name>" or "system" (the server itself, and every
-- event written before this migration); role is an operator token's role; source the address
-- the request came from.
ALTER TABLE events ADD COLUMN actor TEXT NOT NULL DEFAULT 'system';
ALTER TABLE events ADD COLUMN role TEXT NOT NULL DEFAULT '';
ALTER TABLE events ADD COLUMN source TEXT NOT NULL DEFAULT '';
