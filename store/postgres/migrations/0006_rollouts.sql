-- SQLite's migration 14: rollouts, the plan and progress as the rollout package writes them
-- (JSON), with the state, whether the engine still has work (open) and when it steps next; and
-- the rollout and attempt that set an assignment.
CREATE TABLE rollouts (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app        TEXT NOT NULL,
    version    TEXT NOT NULL,
    policy     TEXT NOT NULL,
    plan       TEXT NOT NULL,
    progress   TEXT NOT NULL,
    state      TEXT NOT NULL,
    open       BOOLEAN NOT NULL,
    wake_at    TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX rollouts_open ON rollouts (open, app);
ALTER TABLE assignments ADD COLUMN rollout BIGINT NOT NULL DEFAULT 0;
ALTER TABLE assignments ADD COLUMN attempt BIGINT NOT NULL DEFAULT 0;
