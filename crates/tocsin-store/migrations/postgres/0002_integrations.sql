-- API integrations: inbound alert sources whose access flags decide what their keys may do.

CREATE TABLE integrations (
    id                  TEXT PRIMARY KEY,
    org_id              TEXT NOT NULL REFERENCES organizations(id),
    name                TEXT NOT NULL,
    name_folded         TEXT NOT NULL,
    type                TEXT NOT NULL,
    team_id             TEXT,
    allow_read          BOOLEAN NOT NULL,
    allow_write         BOOLEAN NOT NULL,
    allow_delete        BOOLEAN NOT NULL,
    allow_configuration BOOLEAN NOT NULL,
    enabled             BOOLEAN NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    UNIQUE (org_id, name_folded)
);
