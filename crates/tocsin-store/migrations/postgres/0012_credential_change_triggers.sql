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

-- On PostgreSQL the trigger also sends the NOTIFY that nodes LISTEN for; it is delivered
-- when the transaction commits, and not at all if it rolls back.
CREATE FUNCTION tocsin_credential_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO credential_changes (at) VALUES ((extract(epoch FROM clock_timestamp()) * 1000)::BIGINT);
    PERFORM pg_notify('tocsin_credentials', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER organizations_credential_changed AFTER DELETE OR UPDATE ON organizations
    FOR EACH ROW EXECUTE FUNCTION tocsin_credential_changed();

CREATE TRIGGER users_credential_changed AFTER DELETE OR UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION tocsin_credential_changed();

CREATE TRIGGER sessions_credential_changed AFTER DELETE OR UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION tocsin_credential_changed();

CREATE TRIGGER teams_credential_changed AFTER DELETE OR UPDATE ON teams
    FOR EACH ROW EXECUTE FUNCTION tocsin_credential_changed();

CREATE TRIGGER team_members_credential_changed AFTER DELETE OR UPDATE OR INSERT ON team_members
    FOR EACH ROW EXECUTE FUNCTION tocsin_credential_changed();

CREATE TRIGGER roles_credential_changed AFTER DELETE OR UPDATE OR INSERT ON roles
    FOR EACH ROW EXECUTE FUNCTION tocsin_credential_changed();

CREATE TRIGGER service_accounts_credential_changed AFTER DELETE OR UPDATE ON service_accounts
    FOR EACH ROW EXECUTE FUNCTION tocsin_credential_changed();

CREATE TRIGGER api_keys_credential_changed AFTER DELETE OR UPDATE OF id, org_id, kind, name, name_folded, scope_id, description, user_id, team_id, integration_id, service_account_id, role_names, team_ids, team_role_names, allowed_cidrs, region, token_hint, created_at, updated_at, created_by_type, created_by_id, created_by_name, expires_at, token_last_issued_at, grace_period_ends_at, revoked_at, revoked_by_type, revoked_by_id, revoked_by_name, rate_limit ON api_keys
    FOR EACH ROW EXECUTE FUNCTION tocsin_credential_changed();

CREATE TRIGGER api_key_tokens_credential_changed AFTER DELETE OR UPDATE ON api_key_tokens
    FOR EACH ROW EXECUTE FUNCTION tocsin_credential_changed();

CREATE TRIGGER integrations_credential_changed AFTER DELETE OR UPDATE ON integrations
    FOR EACH ROW EXECUTE FUNCTION tocsin_credential_changed();
