-- A node's page reads the node's newest events: by subject, newest first.
CREATE INDEX events_subject ON events (subject, id);
