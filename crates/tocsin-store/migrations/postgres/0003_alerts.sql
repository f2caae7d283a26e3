-- Opsgenie-compatible alerts. Same conventions as 0001: integer milliseconds for times,
-- JSON text for lists and maps.

-- The next tinyId of each organization, taken inside the transaction that creates the alert.
CREATE TABLE alert_counters (
    org_id       TEXT PRIMARY KEY,
    next_tiny_id BIGINT NOT NULL
);

CREATE TABLE alerts (
    id               TEXT PRIMARY KEY,
    org_id           TEXT NOT NULL REFERENCES organizations(id),
    tiny_id          BIGINT NOT NULL,
    alias            TEXT NOT NULL,
    message          TEXT NOT NULL,
    status           TEXT NOT NULL,
    acknowledged     BOOLEAN NOT NULL,
    is_seen          BOOLEAN NOT NULL,
    tags             TEXT NOT NULL,
    snoozed          BOOLEAN NOT NULL,
    snoozed_until    BIGINT,
    count            BIGINT NOT NULL,
    last_occurred_at BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    source           TEXT NOT NULL,
    owner            TEXT NOT NULL,
    priority         TEXT NOT NULL,
    responders       TEXT NOT NULL,
    teams            TEXT NOT NULL,
    visible_to       TEXT NOT NULL,
    owner_team_id    TEXT,
    integration_id   TEXT,
    integration_name TEXT,
    integration_type TEXT,
    ack_time         BIGINT,
    close_time       BIGINT,
    acknowledged_by  TEXT,
    closed_by        TEXT,
    actions          TEXT NOT NULL,
    entity           TEXT NOT NULL,
    description      TEXT NOT NULL,
    details          TEXT NOT NULL,
    UNIQUE (org_id, tiny_id)
);
-- At most one open alert per alias: the de-duplication rule, enforced by the database.
CREATE UNIQUE INDEX alerts_open_alias ON alerts (org_id, alias) WHERE status = 'open';
CREATE INDEX alerts_org_created ON alerts (org_id, created_at);
CREATE INDEX alerts_org_alias ON alerts (org_id, alias, created_at);

CREATE TABLE alert_notes (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    alert_id   TEXT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    note       TEXT NOT NULL,
    owner      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX alert_notes_alert ON alert_notes (alert_id, id);

CREATE TABLE alert_logs (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    alert_id   TEXT NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    log        TEXT NOT NULL,
    type       TEXT NOT NULL,
    owner      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX alert_logs_alert ON alert_logs (alert_id, id);

-- What became of each asynchronous (202) request, for GET /v2/alerts/requests/{id}.
CREATE TABLE alert_requests (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL,
    action         TEXT NOT NULL,
    success        BOOLEAN NOT NULL,
    status         TEXT NOT NULL,
    alert_id       TEXT NOT NULL,
    alias          TEXT NOT NULL,
    integration_id TEXT,
    processed_at   BIGINT NOT NULL
);
