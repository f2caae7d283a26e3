-- A missed heartbeat's alert, raised at least once. The sweep marks a heartbeat expired and
-- then raises its alert; had the node stopped, or the alert's write failed, in between, the
-- mark stayed and the alert was never raised. Now the mark carries when the sweep took it
-- (its claim), cleared once the alert is written. A claim left standing is taken again by a
-- later sweep, on any node: at once if the writer could not take the alert (released to 0),
-- once older than the retry window if the alert was refused or failed in its write, or the
-- node stopped. NULL: no alert owed.
ALTER TABLE heartbeats ADD COLUMN alert_pending_since BIGINT;
