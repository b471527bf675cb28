-- SQLite's migration 20: each node's progress in a rollout in a row of its own, so that a step
-- writes only the nodes it moved, and a revision of the rollout that grows with every write.
CREATE TABLE rollout_nodes (
    rollout  BIGINT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    node     TEXT NOT NULL,
    progress TEXT NOT NULL,
    PRIMARY KEY (rollout, node)
);
ALTER TABLE rollouts ADD COLUMN rev BIGINT NOT NULL DEFAULT 1;
INSERT INTO rollout_nodes (rollout, node, progress)
    SELECT r.id, j.key, j.value::text FROM rollouts r, jsonb_each(r.progress::jsonb -> 'nodes') j;
UPDATE rollouts SET progress = (progress::jsonb - 'nodes')::text;
