//! Telling every node that credentials changed: a row in `credential_changes` (which nodes
//! poll) and, on PostgreSQL, a NOTIFY on `tocsin_credentials` (which they LISTEN to).

use crate::{Db, Result, Store, now_ms, on_db};

pub const CHANNEL: &str = "tocsin_credentials";

impl Store {
    /// Records a change and wakes the other nodes. Call after the change is committed.
    pub async fn note_credential_change(&self) -> Result<()> {
        on_db!(&self.db, |pool| {
            sqlx::query("INSERT INTO credential_changes (at) VALUES ($1)")
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        if let Db::Postgres(pool) = &self.db {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANNEL)
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// The newest change's id (0 before any), for the poll.
    pub async fn last_credential_change(&self) -> Result<i64> {
        let (n,): (i64,) = on_db!(&self.db, |pool| {
            sqlx::query_as("SELECT COALESCE(MAX(id), 0) FROM credential_changes")
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }

    /// Keeps the log short: drops rows older than an hour.
    pub async fn prune_credential_changes(&self) -> Result<()> {
        on_db!(&self.db, |pool| {
            sqlx::query("DELETE FROM credential_changes WHERE at < $1")
                .bind(now_ms() - 3_600_000)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// A listener for change notifications (PostgreSQL only).
    pub async fn credential_listener(&self) -> Result<Option<sqlx::postgres::PgListener>> {
        match &self.db {
            Db::Postgres(pool) => {
                let mut l = sqlx::postgres::PgListener::connect_with(pool).await?;
                l.listen(CHANNEL).await?;
                Ok(Some(l))
            }
            Db::Sqlite(_) => Ok(None),
        }
    }
}
