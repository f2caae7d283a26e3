-- A log of changes that can alter a credential (keys, users, roles, memberships, integrations).
-- Nodes drop their credential caches when it grows: the fallback to PostgreSQL's LISTEN/NOTIFY.
CREATE TABLE credential_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL
);
