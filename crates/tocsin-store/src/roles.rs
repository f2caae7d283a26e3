//! Custom roles, per organization. Built-in roles live in code (tocsin-core) and are not stored.

use crate::{BeginWrite, Result, Store, StoreError, from_json, now_ms, on_db, to_json};
use tocsin_core::OrgId;
use tocsin_core::permission::{PermSet, Permission};
use tocsin_core::role::{Role, RoleScope};

#[derive(sqlx::FromRow)]
struct RoleRow {
    name: String,
    description: String,
    scope: String,
    permissions: String,
}

impl From<RoleRow> for Role {
    fn from(r: RoleRow) -> Self {
        let names: Vec<String> = from_json(&r.permissions);
        Role {
            name: r.name,
            description: r.description,
            scope: RoleScope::parse(&r.scope).unwrap_or(RoleScope::Team),
            permissions: names
                .iter()
                .filter_map(|n| Permission::parse(n))
                .collect::<PermSet>(),
            builtin: false,
        }
    }
}

impl Store {
    pub async fn list_custom_roles(&self, org: &OrgId) -> Result<Vec<Role>> {
        let rows: Vec<RoleRow> = on_db!(&self.db, |pool| {
            sqlx::query_as("SELECT name, description, scope, permissions FROM roles WHERE org_id = $1 ORDER BY name")
                .bind(org.as_str())
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn insert_role(&self, org: &OrgId, role: &Role) -> Result<()> {
        on_db!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO roles (org_id, name, description, scope, permissions, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(org.as_str())
            .bind(&role.name)
            .bind(&role.description)
            .bind(role.scope.name())
            .bind(to_json(&role.permissions.names()))
            .bind(now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Changes a custom role, unless the change drops a scope someone holds it in: an
    /// account role held by users or keys (`role_names`) cannot become a team role, nor a team
    /// role held by memberships or keys (`team_role_names`) an account role. Then nothing is
    /// written and the answer is the role's scope as it was, and who holds it. The holders are
    /// counted and the role changed in one transaction, its row locked on PostgreSQL (SQLite
    /// writes one at a time); a write that gives the role in the scope being dropped finds it
    /// in that scope inside its own transaction (`check_references!`), so it is counted here
    /// or finds the scope gone, never both missed.
    pub async fn update_role_unless_held(
        &self,
        org: &OrgId,
        role: &Role,
    ) -> Result<Option<(RoleScope, RoleUsage)>> {
        let quoted = crate::like_json_member(&role.name);
        let select = if self.is_postgres() {
            "SELECT scope FROM roles WHERE org_id = $1 AND name = $2 FOR UPDATE"
        } else {
            "SELECT scope FROM roles WHERE org_id = $1 AND name = $2"
        };
        let held = on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let scope: Option<String> = sqlx::query_scalar(select)
                .bind(org.as_str())
                .bind(&role.name)
                .fetch_optional(&mut *tx)
                .await?;
            let was =
                RoleScope::parse(&scope.ok_or(StoreError::NotFound)?).unwrap_or(RoleScope::Team);
            let drops_account = was.allows_account() && !role.scope.allows_account();
            let drops_team = was.allows_team() && !role.scope.allows_team();
            if drops_account || drops_team {
                let counts: (i64, i64, i64, i64, i64) = sqlx::query_as(ROLE_USAGE)
                    .bind(org.as_str())
                    .bind(&role.name)
                    .bind(&quoted)
                    .fetch_one(&mut *tx)
                    .await?;
                let usage = RoleUsage::from(counts);
                let dropped = if drops_account {
                    usage.users + usage.keys_account
                } else {
                    0
                } + if drops_team {
                    usage.memberships + usage.keys_team
                } else {
                    0
                };
                if dropped > 0 {
                    return Ok(Some((was, usage)));
                }
            }
            sqlx::query(
                "UPDATE roles SET description = $3, scope = $4, permissions = $5, updated_at = $6 WHERE org_id = $1 AND name = $2",
            )
            .bind(org.as_str())
            .bind(&role.name)
            .bind(&role.description)
            .bind(role.scope.name())
            .bind(to_json(&role.permissions.names()))
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            None
        });
        Ok(held)
    }

    /// Deletes a custom role unless someone holds it: the answer is who held it (all zero
    /// when it was deleted). The count and the delete are one transaction, with the role's row
    /// locked on PostgreSQL (SQLite writes one at a time), so a key, user or membership given
    /// the role at the same moment either is counted or, written after, finds no role.
    pub async fn delete_role_unless_held(&self, org: &OrgId, name: &str) -> Result<RoleUsage> {
        let quoted = crate::like_json_member(name);
        let select = if self.is_postgres() {
            "SELECT 1 FROM roles WHERE org_id = $1 AND name = $2 FOR UPDATE"
        } else {
            "SELECT 1 FROM roles WHERE org_id = $1 AND name = $2"
        };
        let usage = on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let found = sqlx::query(select)
                .bind(org.as_str())
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                return Err(StoreError::NotFound);
            }
            let counts: (i64, i64, i64, i64, i64) = sqlx::query_as(ROLE_USAGE)
                .bind(org.as_str())
                .bind(name)
                .bind(&quoted)
                .fetch_one(&mut *tx)
                .await?;
            let usage = RoleUsage::from(counts);
            if usage.total() == 0 {
                sqlx::query("DELETE FROM roles WHERE org_id = $1 AND name = $2")
                    .bind(org.as_str())
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            usage
        });
        Ok(usage)
    }
}

/// Who holds role `$2` (its JSON-quoted LIKE pattern `$3`) in organization `$1`: users,
/// memberships, live keys in either scope, live keys as an account role, as a team role.
const ROLE_USAGE: &str = "SELECT (SELECT COUNT(*) FROM users WHERE org_id = $1 AND role_name = $2),
        (SELECT COUNT(*) FROM team_members WHERE org_id = $1 AND team_role_names LIKE $3 ESCAPE '\\'),
        (SELECT COUNT(*) FROM api_keys WHERE org_id = $1 AND revoked_at IS NULL
           AND (role_names LIKE $3 ESCAPE '\\' OR team_role_names LIKE $3 ESCAPE '\\')),
        (SELECT COUNT(*) FROM api_keys WHERE org_id = $1 AND revoked_at IS NULL
           AND role_names LIKE $3 ESCAPE '\\'),
        (SELECT COUNT(*) FROM api_keys WHERE org_id = $1 AND revoked_at IS NULL
           AND team_role_names LIKE $3 ESCAPE '\\')";

impl From<(i64, i64, i64, i64, i64)> for RoleUsage {
    fn from(
        (users, memberships, keys, keys_account, keys_team): (i64, i64, i64, i64, i64),
    ) -> Self {
        RoleUsage {
            users,
            memberships,
            keys,
            keys_account,
            keys_team,
        }
    }
}

/// Who holds a role (`Store::delete_role_unless_held`, `Store::update_role_unless_held`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoleUsage {
    /// Users whose account role it is.
    pub users: i64,
    /// Team memberships that hold it as a team role.
    pub memberships: i64,
    /// Live keys that hold it, in either scope.
    pub keys: i64,
    /// Live keys that hold it as an account role (`role_names`).
    pub keys_account: i64,
    /// Live keys that hold it as a team role (`team_role_names`).
    pub keys_team: i64,
}

impl RoleUsage {
    /// Everything that holds it: users, memberships and keys.
    pub fn total(&self) -> i64 {
        self.users + self.memberships + self.keys
    }
}
