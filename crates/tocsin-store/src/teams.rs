//! Teams and memberships (each with its team roles).

use crate::point_read::point;
use crate::references::check_references;
use crate::{
    BeginWrite, Page, Result, Store, StoreError, from_json, from_ms, ms, now_ms, on_db, paginate,
    safe, to_json,
};
use time::OffsetDateTime;
use tocsin_core::{OrgId, TeamId, UserId};

#[derive(Clone, Debug)]
pub struct Team {
    pub id: TeamId,
    pub org_id: OrgId,
    pub name: String,
    pub description: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Clone, Debug)]
pub struct Membership {
    pub team_id: TeamId,
    pub user_id: UserId,
    pub team_role_names: Vec<String>,
    pub created_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct TeamRow {
    id: String,
    org_id: String,
    name: String,
    description: String,
    created_at: i64,
    updated_at: i64,
}

impl From<TeamRow> for Team {
    fn from(r: TeamRow) -> Self {
        Team {
            id: TeamId::from_trusted(r.id),
            org_id: OrgId::from_trusted(r.org_id),
            name: r.name,
            description: r.description,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        }
    }
}

const COLUMNS: &str = "id, org_id, name, description, created_at, updated_at";

/// What keeps a team from being deleted (`Store::delete_team_unless_used`): live keys granted
/// on it (`(id, name, kind)`, by id), integrations it owns (`(id, name)`, by id) and
/// heartbeats it owns (names, by name), each counted, with at most a limit of them named.
#[derive(Clone, Debug, Default)]
pub struct TeamDependents {
    pub keys: i64,
    pub named_keys: Vec<(String, String, String)>,
    pub integrations: i64,
    pub named_integrations: Vec<(String, String)>,
    pub heartbeats: i64,
    pub named_heartbeats: Vec<String>,
}

impl TeamDependents {
    pub fn is_empty(&self) -> bool {
        self.keys == 0 && self.integrations == 0 && self.heartbeats == 0
    }
}

impl Store {
    pub async fn insert_team(&self, team: &Team) -> Result<()> {
        on_db!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO teams (id, org_id, name, name_folded, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(team.id.as_str())
            .bind(team.org_id.as_str())
            .bind(&team.name)
            .bind(team.name.to_lowercase())
            .bind(&team.description)
            .bind(ms(team.created_at))
            .bind(ms(team.updated_at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn get_team(&self, org: &OrgId, id: &TeamId) -> Result<Team> {
        let sql = format!("SELECT {COLUMNS} FROM teams WHERE org_id = $1 AND id = $2");
        let row: TeamRow = on_db!(&self.db, |pool| sqlx::query_as(safe(&sql))
            .bind(org.as_str())
            .bind(id.as_str())
            .fetch_one(pool)
            .await?);
        Ok(row.into())
    }

    /// The organization's team with this name, in any case (names are unique that way).
    pub async fn find_team_by_name(&self, org: &OrgId, name: &str) -> Result<Option<Team>> {
        let sql = format!("SELECT {COLUMNS} FROM teams WHERE org_id = $1 AND name_folded = $2");
        let row: Option<TeamRow> = on_db!(&self.db, |pool| sqlx::query_as(safe(&sql))
            .bind(org.as_str())
            .bind(name.to_lowercase())
            .fetch_optional(pool)
            .await?);
        Ok(row.map(Team::from))
    }

    pub async fn list_teams(
        &self,
        org: &OrgId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Team>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM teams WHERE org_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        );
        let rows: Vec<TeamRow> = on_db!(&self.db, |pool| {
            sqlx::query_as(safe(&sql))
                .bind(org.as_str())
                .bind(cursor)
                .bind(limit as i64 + 1)
                .fetch_all(pool)
                .await?
        });
        Ok(paginate(
            rows.into_iter().map(Team::from).collect(),
            limit,
            |t: &Team| t.id.to_string(),
        ))
    }

    /// `list_teams` restricted to `among` (a team-scoped caller's teams): the page and its
    /// cursor hold only those, so paging never shows another team's id.
    pub async fn list_teams_among(
        &self,
        org: &OrgId,
        among: &[TeamId],
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Team>> {
        if among.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let params: Vec<String> = (0..among.len()).map(|i| format!("${}", i + 4)).collect();
        let sql = format!(
            "SELECT {COLUMNS} FROM teams WHERE org_id = $1 AND ($2 IS NULL OR id < $2) AND id IN ({}) ORDER BY id DESC LIMIT $3",
            params.join(", ")
        );
        let rows: Vec<TeamRow> = on_db!(&self.db, |pool| {
            let mut q = sqlx::query_as(safe(&sql))
                .bind(org.as_str())
                .bind(cursor)
                .bind(limit as i64 + 1);
            for t in among {
                q = q.bind(t.as_str());
            }
            q.fetch_all(pool).await?
        });
        Ok(paginate(
            rows.into_iter().map(Team::from).collect(),
            limit,
            |t: &Team| t.id.to_string(),
        ))
    }

    pub async fn update_team(
        &self,
        org: &OrgId,
        id: &TeamId,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<Team> {
        let n = on_db!(&self.db, |pool| {
            sqlx::query(
                "UPDATE teams SET name = COALESCE($3, name), name_folded = COALESCE($4, name_folded),
                 description = COALESCE($5, description), updated_at = $6 WHERE org_id = $1 AND id = $2",
            )
            .bind(org.as_str())
            .bind(id.as_str())
            .bind(name)
            .bind(name.map(str::to_lowercase))
            .bind(description)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_team(org, id).await
    }

    /// Deletes a team and its memberships unless something depends on it; the answer is what
    /// does (empty when the team was deleted), with at most `limit` of each named. The count
    /// and the delete are one transaction, with the team's row locked on PostgreSQL (SQLite
    /// writes one at a time): a key, integration or heartbeat given the team at the same
    /// moment either is counted or, written after, finds no team (`check_references!`).
    pub async fn delete_team_unless_used(
        &self,
        org: &OrgId,
        id: &TeamId,
        limit: usize,
    ) -> Result<TeamDependents> {
        let lock = if self.is_postgres() {
            "SELECT 1 FROM teams WHERE org_id = $1 AND id = $2 FOR UPDATE"
        } else {
            "SELECT 1 FROM teams WHERE org_id = $1 AND id = $2"
        };
        let quoted = crate::like_json_member(id.as_str());
        let limit = limit as i64;
        let dependents = on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let found = sqlx::query(lock)
                .bind(org.as_str())
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                return Err(StoreError::NotFound);
            }
            // Each count comes with the first rows (`COUNT(*) OVER ()` is taken before the
            // LIMIT): one statement per kind of dependent.
            let keys: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT id, name, kind, COUNT(*) OVER () FROM api_keys
                 WHERE org_id = $1 AND revoked_at IS NULL AND (team_id = $2 OR team_ids LIKE $3 ESCAPE '\\')
                 ORDER BY id LIMIT $4",
            )
            .bind(org.as_str())
            .bind(id.as_str())
            .bind(&quoted)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            let integrations: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT id, name, COUNT(*) OVER () FROM integrations
                 WHERE org_id = $1 AND team_id = $2 ORDER BY id LIMIT $3",
            )
            .bind(org.as_str())
            .bind(id.as_str())
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            let heartbeats: Vec<(String, i64)> = sqlx::query_as(
                "SELECT name, COUNT(*) OVER () FROM heartbeats
                 WHERE org_id = $1 AND owner_team_id = $2 ORDER BY name LIMIT $3",
            )
            .bind(org.as_str())
            .bind(id.as_str())
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            let dependents = TeamDependents {
                keys: keys.first().map_or(0, |k| k.3),
                named_keys: keys.into_iter().map(|(i, n, k, _)| (i, n, k)).collect(),
                integrations: integrations.first().map_or(0, |i| i.2),
                named_integrations: integrations.into_iter().map(|(i, n, _)| (i, n)).collect(),
                heartbeats: heartbeats.first().map_or(0, |h| h.1),
                named_heartbeats: heartbeats.into_iter().map(|(n, _)| n).collect(),
            };
            if dependents.is_empty() {
                sqlx::query("DELETE FROM team_members WHERE org_id = $1 AND team_id = $2")
                    .bind(org.as_str())
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM teams WHERE org_id = $1 AND id = $2")
                    .bind(org.as_str())
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            dependents
        });
        Ok(dependents)
    }

    /// Adds or replaces a membership, if it still is what the caller judged (`was`, compare
    /// and set: a route that checked the caller may change the member's current roles
    /// passes them, so a promotion landing in between refuses the write with
    /// `StoreError::Changed` instead of being overwritten by a weaker caller). The team and
    /// the custom roles it gives are checked inside the write's transaction
    /// (`check_references!`): a team or role deleted at the same moment either sees the
    /// membership (a team deletes it with itself; a role counts it as a holder and stays) or
    /// is gone, and then nothing is written (`StoreError::Vanished`).
    pub async fn put_member(
        &self,
        org: &OrgId,
        team: &TeamId,
        user: &UserId,
        roles: &[String],
        was: MembershipWas<'_>,
    ) -> Result<()> {
        let references = self
            .references()
            .teams([team.as_str()])
            .team_roles(roles)
            .user(user.as_str());
        let insert = match was {
            // Nothing there a moment ago: a membership made meanwhile is not replaced.
            MembershipWas::Absent => {
                "INSERT INTO team_members (org_id, team_id, user_id, team_role_names, created_at) VALUES ($1, $2, $3, $4, $5)"
            }
            _ => {
                "INSERT INTO team_members (org_id, team_id, user_id, team_role_names, created_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (team_id, user_id) DO UPDATE SET team_role_names = $4"
            }
        };
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            check_references!(tx, org.as_str(), references);
            if let MembershipWas::Roles(expected) = was {
                let now: Option<String> = sqlx::query_scalar(self.membership_lock())
                    .bind(org.as_str())
                    .bind(team.as_str())
                    .bind(user.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                if now.map(|r| from_json::<Vec<String>>(&r)).as_deref() != Some(expected) {
                    return Err(changed(team, user));
                }
            }
            let written = sqlx::query(insert)
                .bind(org.as_str())
                .bind(team.as_str())
                .bind(user.as_str())
                .bind(to_json(&roles))
                .bind(now_ms())
                .execute(&mut *tx)
                .await;
            match written {
                Ok(_) => {}
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    return Err(changed(team, user));
                }
                Err(e) => return Err(e.into()),
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Removes a membership, if it still is what the caller judged (`was`, as `put_member`).
    pub async fn delete_member(
        &self,
        org: &OrgId,
        team: &TeamId,
        user: &UserId,
        was: MembershipWas<'_>,
    ) -> Result<()> {
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            let now: Option<String> = sqlx::query_scalar(self.membership_lock())
                .bind(org.as_str())
                .bind(team.as_str())
                .bind(user.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let Some(now) = now else {
                return Err(StoreError::NotFound);
            };
            let as_judged = match was {
                MembershipWas::Any => true,
                // Judged missing (so nothing was checked of the member), made meanwhile.
                MembershipWas::Absent => false,
                MembershipWas::Roles(expected) => from_json::<Vec<String>>(&now) == expected,
            };
            if !as_judged {
                return Err(changed(team, user));
            }
            sqlx::query(
                "DELETE FROM team_members WHERE org_id = $1 AND team_id = $2 AND user_id = $3",
            )
            .bind(org.as_str())
            .bind(team.as_str())
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Reads a membership's team roles, locking its row until the transaction ends on
    /// PostgreSQL (SQLite writes one transaction at a time).
    fn membership_lock(&self) -> &'static str {
        if self.is_postgres() {
            "SELECT team_role_names FROM team_members WHERE org_id = $1 AND team_id = $2 AND user_id = $3 FOR UPDATE"
        } else {
            "SELECT team_role_names FROM team_members WHERE org_id = $1 AND team_id = $2 AND user_id = $3"
        }
    }

    /// A page of a team's members, newest membership first (and by user id among those made
    /// in the same millisecond). The cursor is the last member's `created_at` and user id,
    /// `<ms>.<user id>` (`member_cursor`); `None` when `cursor` is not one.
    pub async fn list_members(
        &self,
        org: &OrgId,
        team: &TeamId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Option<Page<Membership>>> {
        let after = match cursor {
            None => None,
            Some(c) => match c.split_once('.') {
                Some((at, user)) if UserId::parse(user).is_some() => match at.parse::<i64>() {
                    Ok(at) => Some((at, user)),
                    Err(_) => return Ok(None),
                },
                _ => return Ok(None),
            },
        };
        let rows: Vec<(String, String, String, i64)> = on_db!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT team_id, user_id, team_role_names, created_at FROM team_members
                 WHERE org_id = $1 AND team_id = $2
                   AND ($3 IS NULL OR created_at < $3 OR (created_at = $3 AND user_id < $4))
                 ORDER BY created_at DESC, user_id DESC LIMIT $5",
            )
            .bind(org.as_str())
            .bind(team.as_str())
            .bind(after.map(|(at, _)| at))
            .bind(after.map(|(_, user)| user))
            .bind(limit as i64 + 1)
            .fetch_all(pool)
            .await?
        });
        let members = rows.into_iter().map(membership).collect();
        Ok(Some(paginate(members, limit, member_cursor)))
    }

    /// A user's memberships. They are part of verifying a personal key, and so a point read
    /// on SQLite.
    pub async fn memberships_of(&self, org: &OrgId, user: &UserId) -> Result<Vec<Membership>> {
        const SQL: &str = "SELECT team_id, user_id, team_role_names, created_at FROM team_members
             WHERE org_id = $1 AND user_id = $2 ORDER BY created_at, team_id";
        let point = point(self.reads.as_deref(), |reads| {
            reads.all(SQL, (org.as_str(), user.as_str()), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
        })?;
        let rows: Vec<(String, String, String, i64)> = match point {
            Some(rows) => rows,
            None => on_db!(&self.db, |pool| sqlx::query_as(SQL)
                .bind(org.as_str())
                .bind(user.as_str())
                .fetch_all(pool)
                .await?),
        };
        Ok(rows.into_iter().map(membership).collect())
    }
}

/// A `team_members` row: team, user, team roles (JSON), created_at (ms).
fn membership((team, user, roles, at): (String, String, String, i64)) -> Membership {
    Membership {
        team_id: TeamId::from_trusted(team),
        user_id: UserId::from_trusted(user),
        team_role_names: from_json(&roles),
        created_at: from_ms(at),
    }
}

/// A members page's cursor: the member's `created_at` (ms) and user id.
fn member_cursor(m: &Membership) -> String {
    format!("{}.{}", ms(m.created_at), m.user_id)
}

/// What a membership must be for `put_member` or `delete_member` to change it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipWas<'a> {
    /// Whatever it is, or none.
    Any,
    /// None: the write adds it.
    Absent,
    /// These team roles.
    Roles(&'a [String]),
}

fn changed(team: &TeamId, user: &UserId) -> StoreError {
    StoreError::Changed(format!("membership of user `{user}` in team `{team}`"))
}
