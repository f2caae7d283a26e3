-- A user's email is unique within its organization, not across the deployment. Before, adding
-- a user whose email another tenant already had was refused, which told the caller that the
-- email was in use somewhere else: tenants must never see each other. Login looks a user up
-- by email across organizations (users_email), and asks for an organization when one email
-- and password sign in to several.
--
-- SQLite cannot drop a column's UNIQUE, so the table is rebuilt with the same columns and
-- rows. Sessions and team memberships reference users(id): with their checks deferred to the
-- commit, the rows they reference are gone for a moment and back before it (dropping users
-- counts each referencing row once, putting its user back uncounts it), so the commit's check
-- passes and no row is deleted or lost. Nothing references users with ON DELETE actions.
PRAGMA defer_foreign_keys = ON;

-- Those checks look sessions up by user: give them an index (kept, for logouts by user),
-- and drop the sessions that have expired, which nothing reads again.
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
DELETE FROM sessions WHERE expires_at < CAST(strftime('%s', 'now') AS INTEGER) * 1000;

CREATE TABLE users_before_0010 AS SELECT * FROM users;
DROP TABLE users;

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    org_id        TEXT NOT NULL REFERENCES organizations(id),
    email         TEXT NOT NULL,
    email_folded  TEXT NOT NULL,
    name          TEXT NOT NULL,
    role_name     TEXT NOT NULL,
    password_hash TEXT,
    active        BOOLEAN NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (org_id, email_folded)
);
INSERT INTO users (id, org_id, email, email_folded, name, role_name, password_hash, active,
                   created_at, updated_at)
    SELECT id, org_id, email, email_folded, name, role_name, password_hash, active, created_at,
           updated_at
    FROM users_before_0010;
DROP TABLE users_before_0010;

CREATE INDEX users_org ON users (org_id, id);
CREATE INDEX users_email ON users (email_folded);
