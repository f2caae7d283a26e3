//! Users (people in an organization) and their login sessions.

use crate::point_read::point;
use crate::references::check_references;
use crate::{BeginWrite, Db, Page, Result, Store, StoreError, from_ms, ms, on_db, paginate, safe};
use time::OffsetDateTime;
use tocsin_core::token::TokenDigest;
use tocsin_core::{OrgId, SessionId, UserId};

#[derive(Clone, Debug)]
pub struct User {
    pub id: UserId,
    pub org_id: OrgId,
    pub email: String,
    pub name: String,
    pub role_name: String,
    pub active: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A user with the password hash, for the login check only.
#[derive(Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: Option<String>,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    org_id: String,
    email: String,
    name: String,
    role_name: String,
    active: bool,
    created_at: i64,
    updated_at: i64,
    password_hash: Option<String>,
}

crate::point_read::rusqlite_row!(UserRow {
    id,
    org_id,
    email,
    name,
    role_name,
    active,
    created_at,
    updated_at,
    password_hash,
});

impl UserRow {
    fn into_credentials(self) -> UserCredentials {
        UserCredentials {
            password_hash: self.password_hash,
            user: User {
                id: UserId::from_trusted(self.id),
                org_id: OrgId::from_trusted(self.org_id),
                email: self.email,
                name: self.name,
                role_name: self.role_name,
                active: self.active,
                created_at: from_ms(self.created_at),
                updated_at: from_ms(self.updated_at),
            },
        }
    }
}

const COLUMNS: &str =
    "id, org_id, email, name, role_name, active, created_at, updated_at, password_hash";

/// What `update_user` did.
#[derive(Clone, Debug)]
pub enum UserUpdate {
    /// The change was made; the user as it is now.
    Updated(User),
    /// Refused: the user is the organization's last active owner, and the change would make
    /// them inactive or give them another role.
    LastOwner,
}

#[derive(Clone, Debug, Default)]
pub struct UserPatch {
    pub name: Option<String>,
    pub role_name: Option<String>,
    pub active: Option<bool>,
    /// A new password's hash: set, and every session of the user ended, in the same
    /// transaction as the rest.
    pub password_hash: Option<String>,
    /// What the user was judged to be by the caller's no-escalation check: the change is
    /// written only while the user still is (compare and set; `StoreError::Changed`).
    pub was: Option<UserStanding>,
}

/// What a user holds: their account role and their team memberships' roles, by team.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserStanding {
    role_name: String,
    memberships: Vec<(String, Vec<String>)>,
}

impl UserStanding {
    pub fn of(role_name: &str, memberships: &[crate::teams::Membership]) -> UserStanding {
        let mut memberships: Vec<(String, Vec<String>)> = memberships
            .iter()
            .map(|m| (m.team_id.to_string(), m.team_role_names.clone()))
            .collect();
        memberships.sort();
        UserStanding {
            role_name: role_name.to_owned(),
            memberships,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Session {
    pub id: SessionId,
    pub org_id: OrgId,
    pub user_id: UserId,
    pub expires_at: OffsetDateTime,
}

impl Store {
    /// Creates a user. A custom account role is checked inside the insert's transaction
    /// (`check_references!`): deleted at the same moment, it either counts the new user as a
    /// holder (and stays) or is gone, and then nothing is written (`StoreError::Vanished`).
    pub async fn insert_user(&self, user: &User, password_hash: Option<&str>) -> Result<()> {
        let references = self.references().account_roles([&user.role_name]);
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            check_references!(tx, user.org_id.as_str(), references);
            sqlx::query(
                "INSERT INTO users (id, org_id, email, email_folded, name, role_name, password_hash, active, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(user.id.as_str())
            .bind(user.org_id.as_str())
            .bind(&user.email)
            .bind(user.email.to_lowercase())
            .bind(&user.name)
            .bind(&user.role_name)
            .bind(password_hash)
            .bind(user.active)
            .bind(ms(user.created_at))
            .bind(ms(user.updated_at))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn get_user(&self, org: &OrgId, id: &UserId) -> Result<User> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE org_id = $1 AND id = $2");
        let point = point(self.reads.as_deref(), |reads| {
            reads.one(&sql, (org.as_str(), id.as_str()), UserRow::from_rusqlite)
        })?;
        let row: UserRow = match point {
            Some(row) => row,
            None => on_db!(&self.db, |pool| sqlx::query_as(safe(&sql))
                .bind(org.as_str())
                .bind(id.as_str())
                .fetch_one(pool)
                .await?),
        };
        Ok(row.into_credentials().user)
    }

    /// The active users with a password and this email (case folded), in every organization,
    /// oldest first and at most `limit` of them: those a login may sign in as (an email is
    /// unique within an organization only).
    pub async fn find_login_candidates(
        &self,
        email: &str,
        limit: usize,
    ) -> Result<Vec<UserCredentials>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM users WHERE email_folded = $1 AND active = $3 AND password_hash IS NOT NULL
             ORDER BY created_at, id LIMIT $2"
        );
        let rows: Vec<UserRow> = on_db!(&self.db, |pool| sqlx::query_as(safe(&sql))
            .bind(email.to_lowercase())
            .bind(limit as i64)
            .bind(true)
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(UserRow::into_credentials).collect())
    }

    /// The user of organization `org` with this email (case folded), if there is one.
    pub async fn find_org_user_by_email(
        &self,
        org: &OrgId,
        email: &str,
    ) -> Result<Option<UserCredentials>> {
        let sql = format!("SELECT {COLUMNS} FROM users WHERE org_id = $1 AND email_folded = $2");
        let row: Option<UserRow> = on_db!(&self.db, |pool| sqlx::query_as(safe(&sql))
            .bind(org.as_str())
            .bind(email.to_lowercase())
            .fetch_optional(pool)
            .await?);
        Ok(row.map(UserRow::into_credentials))
    }

    pub async fn list_users(
        &self,
        org: &OrgId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<User>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM users WHERE org_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        );
        let rows: Vec<UserRow> = on_db!(&self.db, |pool| {
            sqlx::query_as(safe(&sql))
                .bind(org.as_str())
                .bind(cursor)
                .bind(limit as i64 + 1)
                .fetch_all(pool)
                .await?
        });
        let users = rows
            .into_iter()
            .map(|r| r.into_credentials().user)
            .collect();
        Ok(paginate(users, limit, |u: &User| u.id.to_string()))
    }

    pub async fn count_users(&self, org: &OrgId) -> Result<i64> {
        let (n,): (i64,) = on_db!(&self.db, |pool| {
            sqlx::query_as("SELECT COUNT(*) FROM users WHERE org_id = $1")
                .bind(org.as_str())
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }

    /// Changes a user, unless the change would leave the organization without an active
    /// owner (the user is one, and would stop being one while no other active owner exists):
    /// then nothing is written and the answer is `UserUpdate::LastOwner`. The check and the
    /// write are one statement (SQLite writes one at a time); on PostgreSQL the organization's
    /// active owners are locked first, so two owners demoting each other at the same moment
    /// cannot both succeed. A custom role the patch gives is checked in the same transaction
    /// (`StoreError::Vanished` when it was deleted), as `insert_user` checks one.
    pub async fn update_user(
        &self,
        org: &OrgId,
        id: &UserId,
        patch: &UserPatch,
    ) -> Result<UserUpdate> {
        // Applies when the user is not an active owner now, stays one after the change, or
        // another active owner remains.
        const SQL: &str =
            "UPDATE users SET name = COALESCE($3, name), role_name = COALESCE($4, role_name),
             active = COALESCE($5, active), updated_at = $6 WHERE org_id = $1 AND id = $2
             AND (NOT (role_name = 'owner' AND active)
                  OR (COALESCE($4, role_name) = 'owner' AND COALESCE($5, active))
                  OR EXISTS (SELECT 1 FROM users o WHERE o.org_id = $1 AND o.id <> $2
                             AND o.role_name = 'owner' AND o.active))";
        macro_rules! update {
            ($executor:expr) => {
                sqlx::query(SQL)
                    .bind(org.as_str())
                    .bind(id.as_str())
                    .bind(patch.name.as_deref())
                    .bind(patch.role_name.as_deref())
                    .bind(patch.active)
                    .bind(crate::now_ms())
                    .execute($executor)
                    .await?
                    .rows_affected()
            };
        }
        // What the change was judged against must still hold: the user's role (its row
        // locked on PostgreSQL) and memberships, read inside the transaction.
        macro_rules! as_judged {
            ($tx:expr, $lock:expr) => {
                if let Some(was) = &patch.was {
                    let role: Option<String> = sqlx::query_scalar($lock)
                        .bind(org.as_str())
                        .bind(id.as_str())
                        .fetch_optional(&mut *$tx)
                        .await?;
                    let role = role.ok_or(StoreError::NotFound)?;
                    let rows: Vec<(String, String)> = sqlx::query_as(
                        "SELECT team_id, team_role_names FROM team_members WHERE org_id = $1 AND user_id = $2",
                    )
                    .bind(org.as_str())
                    .bind(id.as_str())
                    .fetch_all(&mut *$tx)
                    .await?;
                    let mut memberships: Vec<(String, Vec<String>)> = rows
                        .into_iter()
                        .map(|(team, roles)| (team, crate::from_json(&roles)))
                        .collect();
                    memberships.sort();
                    if (UserStanding { role_name: role, memberships }) != *was {
                        return Err(StoreError::Changed(format!("user `{id}`")));
                    }
                }
            };
        }
        // A new password ends every session, once the change is written.
        macro_rules! password {
            ($tx:expr, $done:expr) => {
                if let Some(hash) = &patch.password_hash
                    && $done > 0
                {
                    sqlx::query(
                        "UPDATE users SET password_hash = $3 WHERE org_id = $1 AND id = $2",
                    )
                    .bind(org.as_str())
                    .bind(id.as_str())
                    .bind(hash)
                    .execute(&mut *$tx)
                    .await?;
                    sqlx::query("DELETE FROM sessions WHERE org_id = $1 AND user_id = $2")
                        .bind(org.as_str())
                        .bind(id.as_str())
                        .execute(&mut *$tx)
                        .await?;
                }
            };
        }
        // A custom role it gives is checked in the same transaction, as `insert_user` does.
        let references = self.references().account_roles(&patch.role_name);
        let done = match &self.db {
            Db::Sqlite(pool) => {
                let mut tx = pool.begin_write().await?;
                check_references!(tx, org.as_str(), references);
                as_judged!(
                    tx,
                    "SELECT role_name FROM users WHERE org_id = $1 AND id = $2"
                );
                let done = update!(&mut *tx);
                password!(tx, done);
                tx.commit().await?;
                done
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "SELECT id FROM users WHERE org_id = $1 AND role_name = 'owner' AND active FOR UPDATE",
                )
                .bind(org.as_str())
                .fetch_all(&mut *tx)
                .await?;
                check_references!(tx, org.as_str(), references);
                as_judged!(
                    tx,
                    "SELECT role_name FROM users WHERE org_id = $1 AND id = $2 FOR UPDATE"
                );
                let done = update!(&mut *tx);
                password!(tx, done);
                tx.commit().await?;
                done
            }
        };
        // Nothing changed: the user does not exist (NotFound), or the rule held it back.
        let user = self.get_user(org, id).await?;
        Ok(if done == 0 {
            UserUpdate::LastOwner
        } else {
            UserUpdate::Updated(user)
        })
    }

    pub async fn insert_session(&self, session: &Session, digest: &TokenDigest) -> Result<()> {
        on_db!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO sessions (digest, id, org_id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&digest[..])
            .bind(session.id.as_str())
            .bind(session.org_id.as_str())
            .bind(session.user_id.as_str())
            .bind(crate::now_ms())
            .bind(ms(session.expires_at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Ends a login session (sign-out): its token stops working at once. Whether one was
    /// deleted; a second sign-out of the same session is not an error.
    pub async fn delete_session(&self, digest: &TokenDigest) -> Result<bool> {
        let done = on_db!(&self.db, |pool| {
            sqlx::query("DELETE FROM sessions WHERE digest = $1")
                .bind(&digest[..])
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    pub async fn find_session(&self, digest: &TokenDigest) -> Result<Option<Session>> {
        let row: Option<(String, String, String, i64)> = on_db!(&self.db, |pool| {
            sqlx::query_as("SELECT id, org_id, user_id, expires_at FROM sessions WHERE digest = $1")
                .bind(&digest[..])
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(id, org, user, exp)| Session {
            id: SessionId::from_trusted(id),
            org_id: OrgId::from_trusted(org),
            user_id: UserId::from_trusted(user),
            expires_at: from_ms(exp),
        }))
    }
}
