//! Telling every node that credentials changed: a row in `credential_changes` (which nodes
//! poll) and, on PostgreSQL, a NOTIFY on `tocsin_credentials` (which they LISTEN to). Both
//! are written by database triggers in the transaction of the change itself (migration
//! 0012), so a change that commits is always announced, whoever made it.

use crate::{Db, Result, Store, now_ms, on_db};

pub const CHANNEL: &str = "tocsin_credentials";

/// How far below the newest id the poll counts rows (`credential_changes_above`): more
/// changes than this in flight at once could slip under it unseen by the poll (the NOTIFY
/// would still tell).
pub const CHANGE_WINDOW: i64 = 1_000;

impl Store {
    /// Where the change log stands, for the poll: its newest id, and how many rows have an id
    /// above `bound`. The rows are written by triggers inside each change's own transaction
    /// (migration 0012). On PostgreSQL ids are taken when a row is inserted, not when it
    /// commits, so a change can commit after a later one and land below the newest id: the
    /// count sees it where the newest id does not. The caller keeps `bound` a little below
    /// the newest id (`CHANGE_WINDOW`), so the count is a short index range scan.
    pub async fn credential_changes_above(&self, bound: i64) -> Result<(i64, i64)> {
        let (newest, count): (i64, i64) = on_db!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT COALESCE(MAX(id), 0), COUNT(*) FROM credential_changes WHERE id > $1",
            )
            .bind(bound)
            .fetch_one(pool)
            .await?
        });
        Ok((newest, count))
    }

    /// Keeps the log short: drops rows older than an hour that lie below every node's poll
    /// window (more than twice `CHANGE_WINDOW` below the newest id). Rows inside a window are
    /// kept however old: deleting them would move the count a poll compares, and every node
    /// would drop its cache for nothing (or, with a late commit in the same interval, miss
    /// one).
    pub async fn prune_credential_changes(&self) -> Result<()> {
        on_db!(&self.db, |pool| {
            sqlx::query(
                "DELETE FROM credential_changes WHERE at < $1
                 AND id < (SELECT MAX(id) FROM credential_changes) - $2",
            )
            .bind(now_ms() - 3_600_000)
            .bind(2 * CHANGE_WINDOW)
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
