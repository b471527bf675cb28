-- SQLite's migration 16: a rollout's wave may set how long a new release must stay up and pass
-- its checks (min_healthy_time, healthy_deadline, in nanoseconds; 0: the manifest's own).
ALTER TABLE assignments ADD COLUMN min_healthy_ns BIGINT NOT NULL DEFAULT 0;
ALTER TABLE assignments ADD COLUMN healthy_deadline_ns BIGINT NOT NULL DEFAULT 0;
