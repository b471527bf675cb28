-- The secret that signs agent sessions now lives in its own file (the cluster key), whose mode
-- the server checks at start; the database no longer holds it.
DELETE FROM meta WHERE key = 'secret';
