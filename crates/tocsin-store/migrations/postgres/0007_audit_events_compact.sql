-- Audit events are the one row written for every request (issue #5): the UNIQUE index on
-- `id` is dropped, as on SQLite. Ids are UUIDv7 with 74 random bits, nothing looks an event
-- up by id, and tampering is caught by the hash chain, not by the index.
ALTER TABLE audit_events DROP CONSTRAINT audit_events_id_key;
