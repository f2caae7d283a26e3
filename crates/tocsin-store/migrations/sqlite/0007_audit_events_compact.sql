-- Audit events are the one row written for every request, so each b-tree they touch is paid
-- on every request (issue #5). The table is now keyed by (chain, seq) itself (WITHOUT ROWID:
-- no rowid b-tree beside the primary key's), and the UNIQUE index on `id` is gone: ids are
-- UUIDv7 with 74 random bits, nothing looks an event up by id, and tampering is caught by
-- the hash chain, not by the index. Two b-trees per event instead of four.
CREATE TABLE audit_events_compact (
    chain       TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    id          TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    actor_type  TEXT,
    actor_id    TEXT,
    actor_name  TEXT,
    api_key_id  TEXT,
    token_hint  TEXT,
    action      TEXT NOT NULL,
    method      TEXT,
    route       TEXT,
    target_type TEXT,
    target_id   TEXT,
    outcome     TEXT NOT NULL,
    status      BIGINT,
    ip          TEXT,
    user_agent  TEXT,
    request_id  TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
) WITHOUT ROWID;

INSERT INTO audit_events_compact (chain, seq, id, occurred_at, actor_type, actor_id, actor_name,
    api_key_id, token_hint, action, method, route, target_type, target_id, outcome, status, ip,
    user_agent, request_id, prev_hash, hash)
SELECT chain, seq, id, occurred_at, actor_type, actor_id, actor_name, api_key_id, token_hint,
    action, method, route, target_type, target_id, outcome, status, ip, user_agent, request_id,
    prev_hash, hash
FROM audit_events;

DROP TABLE audit_events;
ALTER TABLE audit_events_compact RENAME TO audit_events;
CREATE INDEX audit_events_key ON audit_events (chain, api_key_id, seq);
