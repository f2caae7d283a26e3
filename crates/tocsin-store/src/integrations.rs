//! API integrations: inbound alert sources, global or owned by a team.

use crate::point_read::point;
use crate::references::check_references;
use crate::{
    BeginWrite, Page, Result, Store, StoreError, from_ms, ms, now_ms, on_db, paginate, safe,
};
use time::OffsetDateTime;
use tocsin_core::integration::AccessFlags;
use tocsin_core::{IntegrationId, OrgId, TeamId};

#[derive(Clone, Debug)]
pub struct Integration {
    pub id: IntegrationId,
    pub org_id: OrgId,
    pub name: String,
    pub kind: String,
    pub team_id: Option<TeamId>,
    pub flags: AccessFlags,
    pub enabled: bool,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    org_id: String,
    name: String,
    #[sqlx(rename = "type")]
    kind: String,
    team_id: Option<String>,
    allow_read: bool,
    allow_write: bool,
    allow_delete: bool,
    allow_configuration: bool,
    enabled: bool,
    created_at: i64,
    updated_at: i64,
}

crate::point_read::rusqlite_row!(Row {
    id, org_id, name, kind = "type", team_id, allow_read, allow_write, allow_delete,
    allow_configuration, enabled, created_at, updated_at,
});

impl From<Row> for Integration {
    fn from(r: Row) -> Self {
        Integration {
            id: IntegrationId::from_trusted(r.id),
            org_id: OrgId::from_trusted(r.org_id),
            name: r.name,
            kind: r.kind,
            team_id: r.team_id.map(TeamId::from_trusted),
            flags: AccessFlags {
                read: r.allow_read,
                write: r.allow_write,
                delete: r.allow_delete,
                configuration: r.allow_configuration,
            },
            enabled: r.enabled,
            created_at: from_ms(r.created_at),
            updated_at: from_ms(r.updated_at),
        }
    }
}

const COLUMNS: &str = "id, org_id, name, type, team_id, allow_read, allow_write, allow_delete, allow_configuration, enabled, created_at, updated_at";

/// Which integrations a caller may list.
#[derive(Clone, Debug, Default)]
pub struct IntegrationVisibility {
    pub all: bool,
    pub teams: Vec<TeamId>,
}

impl Store {
    /// Creates an integration. Its team is checked inside the insert's transaction
    /// (`check_references!`): a team deleted at the same moment either sees the integration
    /// (and is not deleted) or is gone, and then nothing is written (`StoreError::Vanished`).
    /// An update never changes the team (`update_integration`), so it needs no such check.
    pub async fn insert_integration(&self, i: &Integration) -> Result<()> {
        let references = self
            .references()
            .teams(i.team_id.as_ref().map(TeamId::as_str));
        on_db!(&self.db, |pool| {
            let mut tx = pool.begin_write().await?;
            check_references!(tx, i.org_id.as_str(), references);
            sqlx::query(
                "INSERT INTO integrations (id, org_id, name, name_folded, type, team_id, allow_read, allow_write,
                   allow_delete, allow_configuration, enabled, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(i.id.as_str())
            .bind(i.org_id.as_str())
            .bind(&i.name)
            .bind(i.name.to_lowercase())
            .bind(&i.kind)
            .bind(i.team_id.as_ref().map(|t| t.as_str()))
            .bind(i.flags.read)
            .bind(i.flags.write)
            .bind(i.flags.delete)
            .bind(i.flags.configuration)
            .bind(i.enabled)
            .bind(ms(i.created_at))
            .bind(ms(i.updated_at))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn get_integration(&self, org: &OrgId, id: &IntegrationId) -> Result<Integration> {
        let sql = format!("SELECT {COLUMNS} FROM integrations WHERE org_id = $1 AND id = $2");
        let point = point(self.reads.as_deref(), |reads| {
            reads.one(&sql, (org.as_str(), id.as_str()), Row::from_rusqlite)
        })?;
        let row: Row = match point {
            Some(row) => row,
            None => on_db!(&self.db, |pool| {
                sqlx::query_as(safe(&sql))
                    .bind(org.as_str())
                    .bind(id.as_str())
                    .fetch_one(pool)
                    .await?
            }),
        };
        Ok(row.into())
    }

    pub async fn list_integrations(
        &self,
        org: &OrgId,
        visible: &IntegrationVisibility,
        team: Option<&TeamId>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Integration>> {
        let mut vis = vec!["$4 = 1".to_owned()];
        if !visible.teams.is_empty() {
            let ps: Vec<String> = (0..visible.teams.len())
                .map(|i| format!("${}", i + 6))
                .collect();
            vis.push(format!("team_id IN ({})", ps.join(", ")));
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM integrations WHERE org_id = $1 AND ($2 IS NULL OR id < $2)
               AND ($3 IS NULL OR team_id = $3) AND ({}) ORDER BY id DESC LIMIT $5",
            vis.join(" OR ")
        );
        let rows: Vec<Row> = on_db!(&self.db, |pool| {
            let mut q = sqlx::query_as(safe(&sql))
                .bind(org.as_str())
                .bind(cursor)
                .bind(team.map(|t| t.as_str()))
                .bind(visible.all as i64)
                .bind(limit as i64 + 1);
            for t in &visible.teams {
                q = q.bind(t.as_str());
            }
            q.fetch_all(pool).await?
        });
        Ok(paginate(
            rows.into_iter().map(Integration::from).collect(),
            limit,
            |i: &Integration| i.id.to_string(),
        ))
    }

    /// Writes back name, flags and enabled (never the team).
    pub async fn update_integration(&self, i: &Integration) -> Result<Integration> {
        let n = on_db!(&self.db, |pool| {
            sqlx::query(
                "UPDATE integrations SET name = $3, name_folded = $4, allow_read = $5, allow_write = $6, allow_delete = $7,
                   allow_configuration = $8, enabled = $9, updated_at = $10 WHERE org_id = $1 AND id = $2",
            )
            .bind(i.org_id.as_str())
            .bind(i.id.as_str())
            .bind(&i.name)
            .bind(i.name.to_lowercase())
            .bind(i.flags.read)
            .bind(i.flags.write)
            .bind(i.flags.delete)
            .bind(i.flags.configuration)
            .bind(i.enabled)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_integration(&i.org_id, &i.id).await
    }

    pub async fn delete_integration(&self, org: &OrgId, id: &IntegrationId) -> Result<()> {
        let n = on_db!(&self.db, |pool| {
            sqlx::query("DELETE FROM integrations WHERE org_id = $1 AND id = $2")
                .bind(org.as_str())
                .bind(id.as_str())
                .execute(pool)
                .await?
                .rows_affected()
        });
        if n == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }
}
