-- A user's email is unique within its organization, not across the deployment. Before, adding
-- a user whose email another tenant already had was refused, which told the caller that the
-- email was in use somewhere else: tenants must never see each other. Login looks a user up
-- by email across organizations (users_email), and asks for an organization when one email
-- and password sign in to several.
ALTER TABLE users DROP CONSTRAINT users_email_folded_key;
ALTER TABLE users ADD CONSTRAINT users_org_email UNIQUE (org_id, email_folded);
CREATE INDEX users_email ON users (email_folded);
-- As on SQLite, where the rebuild's checks look sessions up by user.
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
