-- What a new alert writes besides itself, made smaller (issue #5); sqlite/0009 has the same
-- change in SQLite's terms.
--
-- 1. The creation log line ("Alert created") is read off the alert itself (its id, creation
--    time and creator) instead of being a row of alert_logs. Alerts created before this
--    migration keep theirs as a row, and their created_by stays NULL.
ALTER TABLE alerts ADD COLUMN created_by TEXT;

-- 2. An alert's log lines and notes are keyed by what they are read by, (alert_id, id): one
--    index where there were two (the id's and the alert's). Building the new key reads the
--    whole table and locks it meanwhile: on a large deployment, upgrade in a quiet hour.
ALTER TABLE alert_logs DROP CONSTRAINT alert_logs_pkey, ADD PRIMARY KEY (alert_id, id);
DROP INDEX alert_logs_alert;
ALTER TABLE alert_notes DROP CONSTRAINT alert_notes_pkey, ADD PRIMARY KEY (alert_id, id);
DROP INDEX alert_notes_alert;
