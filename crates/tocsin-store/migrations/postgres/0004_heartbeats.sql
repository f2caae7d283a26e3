-- Heartbeats: a monitored thing pings; missing its interval opens an alert (alias = name),
-- and the next ping closes it.

CREATE TABLE heartbeats (
    org_id         TEXT NOT NULL REFERENCES organizations(id),
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    interval_value BIGINT NOT NULL,
    interval_unit  TEXT NOT NULL,
    enabled        BOOLEAN NOT NULL,
    owner_team_id  TEXT,
    alert_message  TEXT NOT NULL,
    alert_tags     TEXT NOT NULL,
    alert_priority TEXT NOT NULL,
    last_ping_at   BIGINT,
    expired        BOOLEAN NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (org_id, name)
);
