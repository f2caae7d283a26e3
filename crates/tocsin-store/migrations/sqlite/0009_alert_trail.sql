-- What a new alert writes besides itself, made smaller (issue #5). Every new alert wrote a
-- log line and a request status, and every table a commit touches is a b-tree or three whose
-- last pages are written to the WAL again on every commit.
--
-- 1. The creation log line ("Alert created") is read off the alert itself (its id, creation
--    time and creator) instead of being a row of alert_logs. Alerts created before this
--    migration keep theirs as a row, and their created_by stays NULL.
ALTER TABLE alerts ADD COLUMN created_by TEXT;

-- 2. An alert's log lines and notes are keyed by what they are read by, (alert_id, id),
--    WITHOUT ROWID: the table is its own index, one b-tree where there were three (the rows
--    by rowid, the id's unique index, the alert's index). They are read by alert in id order
--    (alert_entries). Ids stay as they were (UUID v7, unique). (Request statuses stay a
--    rowid table: keyed by id, their 200-byte rows made a b-tree that wrote as many pages
--    per commit as the table and its index together.) The tables are copied whole: on a
--    large store the first start of this version takes a while.

CREATE TABLE alert_logs_keyed (
    alert_id   TEXT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    id         TEXT NOT NULL,
    org_id     TEXT NOT NULL,
    log        TEXT NOT NULL,
    type       TEXT NOT NULL,
    owner      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (alert_id, id)
) WITHOUT ROWID;
INSERT INTO alert_logs_keyed (alert_id, id, org_id, log, type, owner, created_at)
    SELECT alert_id, id, org_id, log, type, owner, created_at FROM alert_logs;
DROP TABLE alert_logs;
ALTER TABLE alert_logs_keyed RENAME TO alert_logs;

CREATE TABLE alert_notes_keyed (
    alert_id   TEXT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    id         TEXT NOT NULL,
    org_id     TEXT NOT NULL,
    note       TEXT NOT NULL,
    owner      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (alert_id, id)
) WITHOUT ROWID;
INSERT INTO alert_notes_keyed (alert_id, id, org_id, note, owner, created_at)
    SELECT alert_id, id, org_id, note, owner, created_at FROM alert_notes;
DROP TABLE alert_notes;
ALTER TABLE alert_notes_keyed RENAME TO alert_notes;
