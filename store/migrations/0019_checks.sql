-- Health: operator checks (their spec as JSON), the latest result of each node's checks (as
-- JSON), their history in buckets (start and width in seconds; perf as a JSON array of
-- label/min/avg/max), and alerts (times in Unix nanoseconds).
CREATE TABLE checks (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE check_results (
    node       TEXT NOT NULL,
    check_name TEXT NOT NULL,
    result     TEXT NOT NULL,
    PRIMARY KEY (node, check_name)
) WITHOUT ROWID;
CREATE TABLE check_history (
    node       TEXT NOT NULL,
    check_name TEXT NOT NULL,
    width      INTEGER NOT NULL,
    start      INTEGER NOT NULL,
    worst      TEXT NOT NULL,
    count      INTEGER NOT NULL,
    perf       TEXT NOT NULL,
    PRIMARY KEY (node, check_name, width, start)
) WITHOUT ROWID;
CREATE INDEX check_history_age ON check_history (width, start);
CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    node       TEXT NOT NULL,
    check_name TEXT NOT NULL,
    state      TEXT NOT NULL,
    since      INTEGER NOT NULL,
    output     TEXT NOT NULL,
    acked_by   TEXT NOT NULL,
    acked_at   INTEGER,
    comment    TEXT NOT NULL,
    cleared_at INTEGER
);
CREATE UNIQUE INDEX alerts_open ON alerts (node, check_name) WHERE cleared_at IS NULL;
