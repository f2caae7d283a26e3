-- Per-key request limits (requests per minute; NULL: none), and the counters that make them
-- and the failed-authentication throttle hold across nodes on PostgreSQL: one row per
-- bucket ("key:<id>", "ip:<address>") and minute, read as a sliding window over the current
-- and previous minute. A single SQLite node keeps its counters in memory and never uses it.
ALTER TABLE api_keys ADD COLUMN rate_limit BIGINT;

CREATE TABLE rate_counters (
    bucket       TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
