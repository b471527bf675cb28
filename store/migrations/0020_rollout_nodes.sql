-- Each node's progress in a rollout gets a row of its own, so that a step writes only the nodes
-- it moved (the whole progress was ~1 MB at 10,000 nodes, written at every step); the rollout's
-- progress keeps the rest. rev grows with every write of the rollout: an engine that kept what it
-- last read or wrote knows from it alone whether that is still what the store holds.
CREATE TABLE rollout_nodes (
    rollout  INTEGER NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    node     TEXT NOT NULL,
    progress TEXT NOT NULL,
    PRIMARY KEY (rollout, node)
) WITHOUT ROWID;
ALTER TABLE rollouts ADD COLUMN rev INTEGER NOT NULL DEFAULT 1;
INSERT INTO rollout_nodes (rollout, node, progress)
    SELECT r.id, j.key, j.value FROM rollouts r, json_each(r.progress, '$.nodes') j;
UPDATE rollouts SET progress = json_remove(progress, '$.nodes');
