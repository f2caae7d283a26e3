-- Tocsin foundation schema. Times are integer milliseconds since the Unix epoch (UTC) in
-- both backends, so the same SQL compares and sorts them; lists of names are JSON text.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE organizations (
    id                             TEXT PRIMARY KEY,
    name                           TEXT NOT NULL,
    max_key_days                   BIGINT,
    alerts_require_integration_key BOOLEAN NOT NULL DEFAULT FALSE,
    created_at                     BIGINT NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES organizations(id),
    email         TEXT NOT NULL,
    email_folded  TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    role_name     TEXT NOT NULL,
    password_hash TEXT,
    active        BOOLEAN NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX users_org ON users (org_id, id);

CREATE TABLE sessions (
    digest     BYTEA PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    org_id     TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE teams (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    name        TEXT NOT NULL,
    name_folded TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (org_id, name_folded)
);

CREATE TABLE team_members (
    org_id          TEXT NOT NULL,
    team_id         TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL REFERENCES users(id),
    team_role_names TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id);

CREATE TABLE roles (
    org_id      TEXT NOT NULL REFERENCES organizations(id),
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    scope       TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, name)
);

CREATE TABLE service_accounts (
    id         TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL REFERENCES organizations(id),
    name       TEXT NOT NULL,
    team_id    TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id                    TEXT PRIMARY KEY,
    org_id                TEXT NOT NULL REFERENCES organizations(id),
    kind                  TEXT NOT NULL,
    name                  TEXT NOT NULL,
    name_folded           TEXT NOT NULL,
    scope_id              TEXT NOT NULL,
    description           TEXT NOT NULL,
    user_id               TEXT,
    team_id               TEXT,
    integration_id        TEXT,
    service_account_id    TEXT,
    role_names            TEXT NOT NULL,
    team_ids              TEXT NOT NULL,
    team_role_names       TEXT NOT NULL,
    allowed_cidrs         TEXT NOT NULL,
    region                TEXT NOT NULL,
    token_hint            TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    created_by_type       TEXT NOT NULL,
    created_by_id         TEXT NOT NULL,
    created_by_name       TEXT NOT NULL,
    expires_at            BIGINT NOT NULL,
    token_last_issued_at  BIGINT NOT NULL,
    grace_period_ends_at  BIGINT,
    last_used_at          BIGINT,
    last_used_ip          TEXT,
    revoked_at            BIGINT,
    revoked_by_type       TEXT,
    revoked_by_id         TEXT,
    revoked_by_name       TEXT,
    expiry_recorded       BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX api_keys_org ON api_keys (org_id, id);
-- Names are unique (case-insensitively) among a scope's live keys; a revoked key frees its name.
CREATE UNIQUE INDEX api_keys_name ON api_keys (org_id, kind, scope_id, name_folded) WHERE revoked_at IS NULL;

-- At most two rows per key: the current token and, during a rotation's grace period, the previous one.
CREATE TABLE api_key_tokens (
    digest        BYTEA PRIMARY KEY,
    key_id        TEXT NOT NULL REFERENCES api_keys(id),
    org_id        TEXT NOT NULL,
    is_current    BOOLEAN NOT NULL,
    hint          TEXT NOT NULL,
    grace_ends_at BIGINT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX api_key_tokens_key ON api_key_tokens (key_id);

-- One hash chain per organization; `chain` is the organization id, or '' for refusals
-- that could not be tied to any organization (malformed or unknown tokens).
CREATE TABLE audit_events (
    chain       TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    id          TEXT NOT NULL UNIQUE,
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
);
CREATE INDEX audit_events_key ON audit_events (chain, api_key_id, seq);

CREATE TABLE audit_heads (
    chain TEXT PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
