-- Audit events are written as segments: one row per commit and chain holding that commit's
-- events in a compact binary form (audit_segment.rs), instead of one row per event. Every
-- request writes an audit event, and a row per event cost b-tree inserts, WAL pages and
-- checkpoint copies on every request (issue #5). The hash chain is unchanged: each event in a
-- segment keeps its own hash, and `prev_hash` is the hash of the event before the segment.
CREATE TABLE audit_segments (
    chain     TEXT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq  BIGINT NOT NULL,
    -- The earliest and latest occurred_at (ms) of the segment's events, for time filters.
    first_at  BIGINT NOT NULL,
    last_at   BIGINT NOT NULL,
    prev_hash TEXT NOT NULL,
    events    BLOB NOT NULL,
    PRIMARY KEY (chain, first_seq)
);
-- (A rowid table on purpose: in a WITHOUT ROWID table the whole row is the b-tree key, and
-- every insert compared its key with rows whose blobs spill onto overflow pages, copying
-- each of those blobs into memory first.)

-- Which segments hold events of a key ('k:' id), an actor ('a:' id) or about a target
-- ('t:' id): the id filters of GET /v1/audit_events read only those segments.
CREATE TABLE audit_segment_terms (
    chain     TEXT NOT NULL,
    term      TEXT NOT NULL,
    first_seq BIGINT NOT NULL,
    PRIMARY KEY (chain, term, first_seq)
) WITHOUT ROWID;

-- Rows written before this migration are moved into segments when a node starts
-- (Store::migrate), then deleted from this table.
ALTER TABLE audit_events RENAME TO audit_events_legacy;
