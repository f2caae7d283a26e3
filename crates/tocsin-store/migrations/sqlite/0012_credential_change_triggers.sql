-- The credential change log is written by the change itself (SPEC, "Storage and deployment":
-- revocation, rotation and role changes take effect on every node within a second).
-- Nodes keep verified credentials in a cache and drop it when `credential_changes` grows.
-- Before this migration a node wrote that row after the change had committed, so a node
-- that failed or died in between left the others serving the old credential. These triggers
-- write it in the same transaction as the change: no change to a credential can commit
-- without its row, whoever makes it (a node, `tocsin orgs create`, an operator's SQL).
--
-- What fires: an update or delete of any row a cached credential is built from, and an
-- insert of a membership or a role (both change what existing keys may do). Other inserts
-- make new things that no cache holds (a new key's token has never been looked up). On
-- api_keys, an update fires only when it sets a column other than last_used_at,
-- last_used_ip or expiry_recorded, which the background sweeps write: a column added to
-- api_keys later must be added to its trigger's list (a store test checks every column).

CREATE TRIGGER organizations_credential_delete AFTER DELETE ON organizations
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER organizations_credential_update AFTER UPDATE ON organizations
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER users_credential_delete AFTER DELETE ON users
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER users_credential_update AFTER UPDATE ON users
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER sessions_credential_delete AFTER DELETE ON sessions
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER sessions_credential_update AFTER UPDATE ON sessions
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER teams_credential_delete AFTER DELETE ON teams
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER teams_credential_update AFTER UPDATE ON teams
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER team_members_credential_delete AFTER DELETE ON team_members
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER team_members_credential_update AFTER UPDATE ON team_members
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER team_members_credential_insert AFTER INSERT ON team_members
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER roles_credential_delete AFTER DELETE ON roles
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER roles_credential_update AFTER UPDATE ON roles
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER roles_credential_insert AFTER INSERT ON roles
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER service_accounts_credential_delete AFTER DELETE ON service_accounts
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER service_accounts_credential_update AFTER UPDATE ON service_accounts
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER api_keys_credential_delete AFTER DELETE ON api_keys
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER api_keys_credential_update AFTER UPDATE OF id, org_id, kind, name, name_folded, scope_id, description, user_id, team_id, integration_id, service_account_id, role_names, team_ids, team_role_names, allowed_cidrs, region, token_hint, created_at, updated_at, created_by_type, created_by_id, created_by_name, expires_at, token_last_issued_at, grace_period_ends_at, revoked_at, revoked_by_type, revoked_by_id, revoked_by_name, rate_limit ON api_keys
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER api_key_tokens_credential_delete AFTER DELETE ON api_key_tokens
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER api_key_tokens_credential_update AFTER UPDATE ON api_key_tokens
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER integrations_credential_delete AFTER DELETE ON integrations
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;

CREATE TRIGGER integrations_credential_update AFTER UPDATE ON integrations
BEGIN
    INSERT INTO credential_changes (at) VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
