-- Rollouts: the plan a policy resolved to and where the rollout stands, as the rollout package
-- writes them (JSON), with what the engine needs to find its work without reading them: the
-- state, whether it still has work (open) and when it wants to step next.
CREATE TABLE rollouts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    app        TEXT NOT NULL,
    version    TEXT NOT NULL,
    policy     TEXT NOT NULL,
    plan       TEXT NOT NULL,
    progress   TEXT NOT NULL,
    state      TEXT NOT NULL,
    open       INTEGER NOT NULL,
    wake_at    TEXT,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX rollouts_open ON rollouts (open, app);
-- The rollout that set an assignment, and its attempt: a retry changes the attempt, so an agent
-- that gave up on the release tries it again.
ALTER TABLE assignments ADD COLUMN rollout INTEGER NOT NULL DEFAULT 0;
ALTER TABLE assignments ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
