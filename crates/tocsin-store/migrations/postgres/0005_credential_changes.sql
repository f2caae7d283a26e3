-- A log of changes that can alter a credential (keys, users, roles, memberships, integrations).
-- Nodes drop their credential caches when it grows: the fallback to LISTEN/NOTIFY.
CREATE TABLE credential_changes (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL
);
