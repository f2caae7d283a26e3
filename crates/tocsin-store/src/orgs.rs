//! Organizations: the tenants.

use crate::{Result, Store, from_ms, ms, on_db, safe};
use time::OffsetDateTime;
use tocsin_core::OrgId;

#[derive(Clone, Debug)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub max_key_days: Option<i64>,
    pub alerts_require_integration_key: bool,
    pub created_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct OrgRow {
    id: String,
    name: String,
    max_key_days: Option<i64>,
    alerts_require_integration_key: bool,
    created_at: i64,
}

impl From<OrgRow> for Organization {
    fn from(r: OrgRow) -> Self {
        Organization {
            id: OrgId::from_trusted(r.id),
            name: r.name,
            max_key_days: r.max_key_days,
            alerts_require_integration_key: r.alerts_require_integration_key,
            created_at: from_ms(r.created_at),
        }
    }
}

const COLUMNS: &str = "id, name, max_key_days, alerts_require_integration_key, created_at";

impl Store {
    pub async fn insert_org(&self, org: &Organization) -> Result<()> {
        on_db!(&self.db, |pool| {
            sqlx::query(
                "INSERT INTO organizations (id, name, max_key_days, alerts_require_integration_key, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(org.id.as_str())
            .bind(&org.name)
            .bind(org.max_key_days)
            .bind(org.alerts_require_integration_key)
            .bind(ms(org.created_at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn get_org(&self, org: &OrgId) -> Result<Organization> {
        let sql = format!("SELECT {COLUMNS} FROM organizations WHERE id = $1");
        let row: OrgRow = on_db!(&self.db, |pool| sqlx::query_as(safe(&sql))
            .bind(org.as_str())
            .fetch_one(pool)
            .await?);
        Ok(row.into())
    }

    pub async fn list_orgs(&self) -> Result<Vec<Organization>> {
        let sql = format!("SELECT {COLUMNS} FROM organizations ORDER BY id");
        let rows: Vec<OrgRow> = on_db!(&self.db, |pool| sqlx::query_as(safe(&sql))
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn count_orgs(&self) -> Result<i64> {
        let (n,): (i64,) = on_db!(&self.db, |pool| sqlx::query_as(
            "SELECT COUNT(*) FROM organizations"
        )
        .fetch_one(pool)
        .await?);
        Ok(n)
    }
}

impl Store {
    /// Changes the name, the key expiry maximum (`Some(None)` clears it) and/or whether alert
    /// writes need integration keys.
    pub async fn update_org(
        &self,
        org: &OrgId,
        name: Option<&str>,
        max_key_days: Option<Option<i64>>,
        alerts_require_integration_key: Option<bool>,
    ) -> Result<Organization> {
        on_db!(&self.db, |pool| {
            sqlx::query(
                "UPDATE organizations SET name = COALESCE($2, name),
                   max_key_days = CASE WHEN $3 THEN $4 ELSE max_key_days END,
                   alerts_require_integration_key = COALESCE($5, alerts_require_integration_key)
                 WHERE id = $1",
            )
            .bind(org.as_str())
            .bind(name)
            .bind(max_key_days.is_some())
            .bind(max_key_days.flatten())
            .bind(alerts_require_integration_key)
            .execute(pool)
            .await?;
        });
        self.get_org(org).await
    }
}
